"""Load: locust's simulated users against uvicorn with two workers, over SQLite and PostgreSQL.

    .venv/bin/python benchmarks/load.py                      # 60 s per engine, 50 users
    .venv/bin/python benchmarks/load.py --seconds 20 --engines sqlite

Per engine, a throw-away database (PostgreSQL: a server started for the run, as the tests start
theirs, tests/postgres_server.py) holds one large synthetic run (tests/backend/synthetic_run.py,
the factory of benchmarks/steer.py: 100,000 items, 2,000 users, 1,024 latents, 5 examples per
role and latent). ``python -m backend.serve --workers 2`` serves it on loopback; every worker's
steering engine is loaded and each page rendered before the clock starts. Then ``locust
--headless`` runs in its own process (gevent's monkey-patching never reaches the server or this
driver) for ``--seconds`` with ``--users`` users arriving 10 a second
(benchmarks/load_locustfile.py): the latent list, latent pages, user pages and steering (a
same-origin JSON POST) in the ratio 2:3:2:3, with 0.5–1.5 s of think time between clicks. The
figures cover the whole run, arrivals included.

Prints a table, one JSON line with the details (requests, build time, first errors), and as
the LAST line one JSON object with exactly these keys::

    {"engines": {"sqlite": {"rps": ..., "errors": ...,
                            "routes": {"steer": {"p50_ms": ..., "p99_ms": ...}, ...}},
                 "postgres": {...}}}

Targets: ``errors`` = 0; steer ``p99_ms`` < 50; the pages' ``p99_ms`` < 250.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.net import free_port  # noqa: E402
from core.settings import Settings  # noqa: E402

LOCUSTFILE = REPO / "benchmarks" / "load_locustfile.py"
ROUTES = ("latent list", "latent page", "user page", "steer")
PAGES = ("latent list", "latent page", "user page")
RUN_ID = "load"
# One BLAS thread per worker: the workers are the parallelism (as benchmarks/steer.py).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def database(engine: str, data_dir: Path) -> Iterator[str]:
    """The URL of an empty database of ``engine``, removed afterwards."""
    if engine == "sqlite":
        yield f"sqlite:///{data_dir / 'recsae.db'}"
    elif engine == "postgres":
        from tests.postgres_server import postgres_server

        with postgres_server("recsae_load", options="-c max_connections=200") as url:
            yield url
    else:
        raise SystemExit(f"unknown engine {engine!r}: use sqlite or postgres")


def build(url: str, data_dir: Path, args: argparse.Namespace) -> float:
    """Migrate and publish the synthetic run; returns the seconds it took."""
    from core.store import migrate
    from core.store.engine import session_factory
    from tests.backend.synthetic_run import make_run

    started = time.perf_counter()
    migrate.upgrade(url)
    make_run(
        data_dir, session_factory(url), RUN_ID, n_items=args.items, n_users=args.users_in_run,
        d=64, n_latents=args.latents, k=8, seed=args.seed, examples_per_role=5,
    )  # fmt: skip
    return time.perf_counter() - started


@contextmanager
def server(settings: Settings, workers: int) -> Iterator[str]:
    """``python -m backend.serve --workers N`` on a loopback port; yields its base URL."""
    import httpx

    port = free_port()
    cmd = [
        sys.executable, "-m", "backend.serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, **settings.as_environment(), **ONE_THREAD}
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=log, text=True, start_new_session=True)
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


def warm(base: str, args: argparse.Namespace) -> None:
    """Load every worker's steering engine (both modes: replace mode's baseline is computed on
    its first use, 3 s on a busy machine) and render each page kind before the clock starts.
    Concurrent new connections, so every worker gets some; an error here stops the benchmark
    with the server's answer."""
    import httpx

    def visit(i: int) -> None:
        user = (i * 7) % args.users_in_run
        steer = {
            "edits": [{"latent": i % args.latents, "value": 1.0}],
            "mode": "replace" if i % 2 else "error_preserving",
        }
        page = {"Accept": "text/html"}
        answers = [
            httpx.post(
                f"{base}/api/runs/{RUN_ID}/users/{user}/steer",
                json=steer,
                headers={"Origin": base},
                timeout=120,
            ),
            httpx.get(f"{base}/runs/{RUN_ID}/latents?_page={i % 5 + 1}", headers=page, timeout=60),
            httpx.get(f"{base}/runs/{RUN_ID}/latents/{i}", headers=page, timeout=60),
            httpx.get(f"{base}/runs/{RUN_ID}/users/{user}", headers=page, timeout=60),
        ]
        for r in answers:
            if r.status_code != 200:
                raise RuntimeError(f"warm-up: {r.request.url} -> {r.status_code}: {r.text[:300]}")

    with ThreadPoolExecutor(2 * args.workers) as pool:
        list(pool.map(visit, range(12 * args.workers)))


def run_locust(base: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``locust --headless`` for ``args.seconds``; the figures from its CSV statistics."""
    prefix = out / "locust"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", f"{args.seconds}s", "--stop-timeout", "10", "--host", base,
        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    env = {
        **os.environ,
        "LOAD_RUN_ID": RUN_ID,
        "LOAD_N_USERS": str(args.users_in_run),
        "LOAD_N_LATENTS": str(args.latents),
    }
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.seconds + 120
    )
    stats_file = Path(f"{prefix}_stats.csv")
    if proc.returncode != 0 or not stats_file.is_file():
        raise RuntimeError(f"locust failed ({proc.returncode}): {proc.stderr[-3000:]}")
    with stats_file.open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    with Path(f"{prefix}_exceptions.csv").open() as f:
        exceptions = sum(int(row["Count"]) for row in csv.DictReader(f))
    with Path(f"{prefix}_failures.csv").open() as f:
        failures = [
            f"{r['Method']} {r['Name']}: {r['Error']} x{r['Occurrences']}"
            for r in csv.DictReader(f)
        ]
    total = rows["Aggregated"]
    return {
        "rps": round(float(total["Requests/s"]), 1),
        "errors": int(total["Failure Count"]) + exceptions,
        "requests": int(total["Request Count"]),
        "routes": {
            name: {
                "p50_ms": float(rows[name]["50%"]),
                "p99_ms": float(rows[name]["99%"]),
                "requests": int(rows[name]["Request Count"]),
            }
            for name in ROUTES
            if name in rows
        },
        "first_errors": failures[:5],
    }


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"load-{engine}-") as tmp:
        data_dir = Path(tmp)
        with database(engine, data_dir) as url:
            build_s = build(url, data_dir, args)
            settings = Settings(data_dir=data_dir, database_url=url)
            with server(settings, args.workers) as base:
                warm(base, args)
                result = run_locust(base, args, data_dir)
    return {**result, "build_s": round(build_s, 1)}


def last_line(result: dict[str, Any]) -> dict[str, Any]:
    """Only the keys the last line promises: rps, errors, routes.<route>.p50_ms / p99_ms."""
    return {
        "rps": result["rps"],
        "errors": result["errors"],
        "routes": {
            route: {"p50_ms": f["p50_ms"], "p99_ms": f["p99_ms"]}
            for route, f in result["routes"].items()
        },
    }


def targets(result: dict[str, Any]) -> dict[str, bool]:
    routes = result["routes"]
    return {
        "zero_errors": result["errors"] == 0,
        "steer_p99_lt_50ms": routes.get("steer", {}).get("p99_ms", 1e9) < 50,
        "pages_p99_lt_250ms": all(routes.get(p, {}).get("p99_ms", 1e9) < 250 for p in PAGES),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=60, help="locust's run time per engine")
    p.add_argument("--users", type=int, default=50, help="concurrent simulated users")
    p.add_argument("--spawn-rate", type=float, default=10, help="users started per second")
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users-in-run", type=int, default=2000, help="the run's recommender users")
    p.add_argument("--latents", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    engines = {name: measure(name, args) for name in args.engines.split(",")}
    print(
        f"{args.users} users for {args.seconds}s per engine; uvicorn workers={args.workers}; "
        f"run: {args.items:,} items, {args.users_in_run:,} users, {args.latents} latents"
    )
    print(f"{'engine':<10}{'route':<14}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, r in engines.items():
        for route, figures in r["routes"].items():
            print(
                f"{name:<10}{route:<14}{figures['requests']:>10}{figures['p50_ms']:>9.0f}"
                f"{figures['p99_ms']:>9.0f}"
            )
        print(f"{name:<10}{'all':<14}{r['requests']:>10}  {r['rps']} req/s, {r['errors']} errors")
        for line in r["first_errors"]:
            print(f"  error: {line}")
        print(f"  targets: {targets(r)}")
    print(json.dumps({"details": engines}))  # the same with requests, build time, first errors
    print(json.dumps({"engines": {name: last_line(r) for name, r in engines.items()}}))


if __name__ == "__main__":
    main()
