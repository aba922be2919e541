"""How soon a new user sees something: the README's demo command on a fresh clone.

Clones this checkout's HEAD into a temporary folder (``git clone``: tracked files only, no
``.venv``, no ``var/``), runs ``scripts/demo.sh --port PORT`` there with its data directory in
the temporary folder and no ``RECSAE_*`` variable of ours, and times, from the command's start:

- ``setup_seconds``: until setup.sh says ``.venv ready`` (a fresh virtualenv, the project and
  its dependencies installed);
- ``first_page_seconds``: until the home page answers 200;
- ``first_run_seconds``: until a run is published and its latent page answers 200;
- ``all_done_seconds``: until every demo run is published with its LLM labels (each run at
  version 2 or later, no pipeline left in the home page's progress).

Targets (docs/architecture.md, progress): first page <= setup + 30 s, first run <= setup +
120 s, all done <= 900 s. Then it stops the command with Ctrl-C (SIGINT), as a user would, and
checks that it exits. ``pip_cache`` says what made the install faster than on a truly fresh
machine (pip's cache, local wheel folders or indexes in pip's config); ``load`` the machine's
load averages before and after.

    .venv/bin/python benchmarks/firstlook.py [--timeout 1500] [--keep]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.net import free_port  # noqa: E402

DEMO_RUNS = ("ml-latest-small-bprmf", "ml-latest-small-sasrec")
SETUP_DONE = "==> .venv ready"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def pip_cache() -> dict[str, Any]:
    """What the clone's pip install could take from this machine instead of the network."""
    pip = [sys.executable, "-m", "pip"]
    cache = subprocess.run([*pip, "cache", "dir"], capture_output=True, text=True).stdout.strip()
    config = subprocess.run([*pip, "config", "list"], capture_output=True, text=True).stdout
    local = [
        line.split("=", 1)[1].strip("'")
        for line in config.splitlines()
        if line.split("=", 1)[0].rsplit(".", 1)[-1]
        in ("find-links", "extra-index-url", "index-url")
    ]
    cache_bytes = _dir_bytes(Path(cache)) if cache else 0
    return {
        "cache_dir": cache or None,
        "cache_bytes": cache_bytes,
        "local_sources": sorted(set(local)),  # wheel folders and file:// indexes pip reads
        "faster_than_fresh": bool(
            cache_bytes or any("file:" in s or s.startswith("/") for s in local)
        ),
    }


class Log:
    """The command's output, each line with the second it came; ``seen(text)`` the first."""

    def __init__(self, stream: Any, path: Path, start: float) -> None:
        self.lines: list[tuple[float, str]] = []
        self.path, self.start = path, start
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        with open(self.path, "w") as out:
            for line in stream:
                t = time.monotonic() - self.start
                self.lines.append((t, line.rstrip("\n")))
                out.write(f"{t:8.1f}  {line}")
                out.flush()

    def seen(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _get(client: httpx.Client, url: str) -> httpx.Response | None:
    try:
        return client.get(url, timeout=10)
    except httpx.TransportError:
        return None


def measure(timeout: float, keep: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="recsae-firstlook-"))
    repo, data = tmp / "repo", tmp / "var"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSAE_")}
    env.pop("VIRTUAL_ENV", None)
    env["RECSAE_DATA_DIR"] = str(data)
    figures: dict[str, Any] = {
        "commit": head, "port": port, "pip_cache": pip_cache(), "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(
        ["scripts/demo.sh", "--port", str(port)], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    log = Log(proc.stdout, tmp / "demo.log", start)
    base = f"http://127.0.0.1:{port}"
    first_page = first_run = all_done = None
    versions: dict[str, int] = {}
    problem = None
    try:
        with httpx.Client(base_url=base) as client:
            while all_done is None:
                now = time.monotonic() - start
                if proc.poll() is not None:
                    problem = f"the demo command exited with {proc.returncode}:\n{log.tail()}"
                    break
                if now > timeout:
                    problem = f"not all done within {timeout:.0f} s"
                    break
                if first_page is None:
                    r = _get(client, "/")
                    if r is not None and r.status_code == 200:
                        first_page = now
                    else:
                        time.sleep(0.25)
                        continue
                r = _get(client, "/index.json")
                if r is None or r.status_code != 200:
                    time.sleep(0.5)
                    continue
                index = r.json()
                versions = {run["id"]: run["version"] for run in index["runs"]}
                failed = [p for p in index["progress"] if p["state"] in ("failed", "stopped")]
                if failed:
                    problem = "; ".join(
                        f"{p['run_id']}: {p['state']}: {p['error']}" for p in failed
                    )
                    break
                if first_run is None and versions:
                    latent = _get(client, f"/runs/{next(iter(versions))}/latents/0")
                    if latent is not None and latent.status_code == 200:
                        first_run = time.monotonic() - start
                if (
                    first_run is not None
                    and all(versions.get(run, 0) >= 2 for run in DEMO_RUNS)
                    and not index["progress"]
                ):
                    all_done = time.monotonic() - start
                time.sleep(0.5)
        stopped_cleanly = None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group
            try:
                proc.wait(timeout=60)
                stopped_cleanly = True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                stopped_cleanly = False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.thread.join(timeout=5)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    setup = log.seen(SETUP_DONE)
    rnd = lambda x: None if x is None else round(x, 1)  # noqa: E731
    figures |= {
        "setup_seconds": rnd(setup),
        "first_page_seconds": rnd(first_page),
        "first_run_seconds": rnd(first_run),
        "all_done_seconds": rnd(all_done),
        "versions": versions,
        "stopped_by_ctrl_c": stopped_cleanly,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "log": str(tmp / "demo.log") if keep else None,
        "problem": problem,
    }
    if setup is not None:
        figures["targets"] = {
            "first_page <= setup + 30 s": first_page is not None and first_page <= setup + 30,
            "first_run <= setup + 120 s": first_run is not None and first_run <= setup + 120,
            "all_done <= 900 s": all_done is not None and all_done <= 900,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1500, help="give up after (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone and log")
    args = parser.parse_args()
    figures = measure(args.timeout, args.keep)
    for key in ("setup_seconds", "first_page_seconds", "first_run_seconds", "all_done_seconds"):
        print(f"{key:22s} {figures[key]}")
    for target, met in (figures.get("targets") or {}).items():
        print(f"{target:28s} {'met' if met else 'MISSED'}")
    if figures["problem"]:
        print(f"problem: {figures['problem']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
