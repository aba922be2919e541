"""What the benchmarks share.

- Runs of the pipeline on the demo data, kept in one data directory (``var/bench`` by default)
  so one benchmark reuses what another computed, and the authors' published figures
  (``benchmarks/published.json``, with their source and date). A stage finished before is reused
  and not timed again: :func:`run_demo` says which stages ran in this process (with their
  seconds) and which were reused; ``--fresh`` starts from an empty temporary directory, so every
  stage runs. (The pipeline, and torch with it, is imported only there.)
- The serving benchmarks' pieces (burst.py, load.py, annotate.py, steer.py): a throw-away
  database of either engine (:func:`database`), ``python -m backend.serve`` on a loopback port
  (:func:`server`), one HTTP request on its own connection (:func:`raw_request`) and the
  nearest-rank percentile they all report (:func:`percentile`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import rundir  # noqa: E402
from core.net import free_port  # noqa: E402
from core.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from worker.pipeline import Run

DEFAULT_DATA_DIR = ROOT / "var" / "bench"
PUBLISHED = ROOT / "benchmarks" / "published.json"


def add_run_arguments(parser: argparse.ArgumentParser, models: list[str]) -> None:
    parser.add_argument("--models", nargs="+", default=models, help="recommenders to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where runs live (reused)"
    )
    parser.add_argument("--fresh", action="store_true", help="use a new temporary data dir")


@dataclass
class DemoRun:
    """A run as this benchmark left it: which stages it ran (their seconds, measured now) and
    which it found finished and reused (their timings are an earlier process's: not reported)."""

    run: Run
    ran: dict[str, float]
    reused: list[str]


def _marker(run_dir: Path, stage: str) -> tuple[int, int, str] | None:
    """A stage's done marker as it is now (inode, mtime, content), None when absent: a stage
    that runs rewrites its marker (``Run.mark_done``)."""
    path = run_dir / rundir.done_marker(stage)
    try:
        st = path.stat()
        return st.st_ino, st.st_mtime_ns, path.read_text()
    except FileNotFoundError:
        return None


def run_demo(args: argparse.Namespace, **config: Any) -> dict[str, DemoRun]:
    """Each model's run on the demo data, computed (or reused) through the whole pipeline."""
    from worker.pipeline import STAGES, RunConfig, run_pipeline

    data_dir = Path(tempfile.mkdtemp(prefix="recsae-bench-")) if args.fresh else args.data_dir
    settings = Settings(data_dir=data_dir)
    out = {}
    for model in args.models:
        run_config = RunConfig(recommender=model, seed=args.seed, **config)
        run_dir = settings.runs_dir / run_config.run_id
        before = {stage: _marker(run_dir, stage) for stage in STAGES}
        run = run_pipeline(run_config, settings)
        ran, reused = {}, []
        for stage, seconds in run.timings().items():
            if _marker(run.dir, stage) != before[stage]:
                ran[stage] = seconds
            else:
                reused.append(stage)
        out[model] = DemoRun(run, ran, reused)
    return out


def demo_runs(args: argparse.Namespace, **config: Any) -> dict[str, Run]:
    """Each model's run on the demo data, computed (or reused) through the whole pipeline."""
    return {model: r.run for model, r in run_demo(args, **config).items()}


def read(run: Run, name: str) -> Any:
    return json.loads((run.dir / name).read_text())


def published() -> dict[str, Any]:
    """The authors' figures (``benchmarks/published.json``), with ``file`` naming the file: every
    comparison with their numbers reads them here, and its JSON carries ``file``, ``source`` and
    ``date``."""
    figures = json.loads(PUBLISHED.read_text())
    missing = [k for k in ("source", "date") if k not in figures]
    if missing:
        raise SystemExit(f"{PUBLISHED} lacks {missing}: every published figure needs both")
    return {**figures, "file": str(PUBLISHED.relative_to(ROOT))}


def provenance(figures: dict[str, Any]) -> dict[str, str]:
    """What a benchmark's JSON says about the published figures it compared with."""
    return {k: figures[k] for k in ("file", "source", "date")}


# --- serving benchmarks ---------------------------------------------------------------------------

# One BLAS thread per server worker: the workers are the parallelism.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0..1) of ``values``, rounded to 0.1; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


@contextmanager
def database(engine: str, data_dir: Path) -> Iterator[str]:
    """The URL of an empty database of ``engine`` (PostgreSQL: a server started for the run, as
    the tests start theirs, tests/postgres_server.py), removed afterwards."""
    if engine == "sqlite":
        yield f"sqlite:///{data_dir / 'recsae.db'}"
    elif engine == "postgres":
        from tests.postgres_server import postgres_server

        with postgres_server("recsae_load", options="-c max_connections=200") as url:
            yield url
    else:
        raise SystemExit(f"unknown engine {engine!r}: use sqlite or postgres")


@contextmanager
def server(
    settings: Settings, workers: int, repo: Path = ROOT, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``python -m backend.serve --workers N`` on a loopback port, run from ``repo`` (another
    checkout serves the same data with its own code); yields its base URL."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable, "-m", "backend.serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    full_env = {**os.environ, **settings.as_environment(), **ONE_THREAD, **(env or {})}
    # ``repo``'s code first, whatever this process was started with.
    full_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(repo), (env or {}).get("PYTHONPATH")))
    )
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        cmd, cwd=repo, env=full_env, stderr=log, text=True, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/index.json", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"server did not start (exit {proc.poll()}): {log.read()}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # uvicorn's supervisor and its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def cpu_share(cpu_s: float, wall_s: float) -> float:
    """A load generator's CPU seconds over the wall seconds of every core (a share near one over
    the processes sharing the cores would mean the generator, not the server, is measured)."""
    wall = wall_s * (os.cpu_count() or 1)
    return round(cpu_s / wall, 3) if wall else 0.0


def host_port(base: str) -> tuple[str, int]:
    """``http://127.0.0.1:8000`` -> ("127.0.0.1", 8000)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def raw_request(
    base: str,
    method: str,
    path: str,
    body: bytes = b"",
    timeout_s: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> tuple[int | str, float, dict[str, str]]:
    """One request on its own connection (``Connection: close``): (status, or what went wrong;
    seconds; the answer's headers, lower-cased). A few lines of asyncio instead of an HTTP
    library, so that the client's own work (httpx takes milliseconds of CPU per request) is not
    what a burst or an arrival rate measures."""
    host, port = host_port(base)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head.encode() + body)
            raw = await reader.read()  # to the end: the server closes after its answer
            writer.close()
    except TimeoutError:
        return "timeout", time.perf_counter() - started, {}
    except OSError as exc:  # refused or reset: the server did not cope
        return f"transport: {type(exc).__name__}", time.perf_counter() - started, {}
    seconds = time.perf_counter() - started
    status, fields = _answer_head(raw.split(b"\r\n\r\n", 1)[0])
    return status, seconds, fields if isinstance(status, int) else {}


def _answer_head(head: bytes) -> tuple[int | str, dict[str, str]]:
    """An answer's status line and header fields (lower-cased): (status, or what is wrong with
    it; the fields)."""
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    status = lines[0].split(" ")
    if not lines[0].startswith("HTTP/1.1 ") or len(status) < 2 or not status[1].isdigit():
        return f"no HTTP answer: {lines[0][:40]!r}", fields
    return int(status[1]), fields


class KeepAlive:
    """One HTTP/1.1 keep-alive connection that sends requests one after another, the lean
    counterpart of :func:`raw_request` for loops that measure a server's throughput: a few
    hundred microseconds of client CPU per request, where httpx takes milliseconds and its pool
    grows quadratically slower with the requests queued in it (an open loop behind a slow moment
    then measured the client, not the server). Answers must carry ``Content-Length`` (every
    JSON route does); one that asks to close the connection gets a new one for the next."""

    def __init__(self, base: str) -> None:
        self.host, self.port = host_port(base)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def post_json(self, path: str, body: bytes) -> bytes:
        """A POST of ``body`` as JSON, as bytes ready to :meth:`send` (build them once)."""
        return (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def send(self, request: bytes, timeout_s: float = 10.0) -> tuple[int | str, bytes]:
        """(status, or what went wrong; the body)."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                self._writer.write(request)
                status, fields = _answer_head(await self._reader.readuntil(b"\r\n\r\n"))
                body = await self._reader.readexactly(int(fields.get("content-length", "0")))
        except TimeoutError:
            self.close()
            return "timeout", b""
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            return f"transport: {type(exc).__name__}", b""
        if not isinstance(status, int) or fields.get("connection") == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
