"""Load: capacity under an open-loop arrival rate, over SQLite and PostgreSQL, two workers.

    .venv/bin/python benchmarks/load.py                      # both engines, default steps
    .venv/bin/python benchmarks/load.py --engines sqlite --steps 25,50,100 --seconds 10

Per engine, a throw-away database (PostgreSQL: a server started for the run, as the tests start
theirs, tests/postgres_server.py) holds one large synthetic run (tests/backend/synthetic_run.py,
the factory of benchmarks/steer.py: 100,000 items, 2,000 users, 1,024 latents, 5 examples per
role and latent). ``python -m backend.serve --workers 2`` serves it on loopback; every worker's
steering engine is loaded and each page rendered before the clock starts.

The load comes from a generator in its own process (this file with ``--generate``): requests
are *scheduled* on a clock at a fixed arrival rate, whatever the server answers (open loop; the
latency of each runs from its scheduled time, so queueing is not hidden), each on its own
connection, in the mix of a person browsing (``_mix``): the latent list,
latent pages, user pages and steering (a same-origin JSON POST) in the ratio 2:3:2:3. The rate
rises in ``--steps``; ``capacity_rps`` is the highest step held with p99 < 250 ms for every
page, p99 < 50 ms for steering and no error (a 503 refusal counts as an error). Then
``--rate`` is run once more for the per-route figures (``errors`` there must be 0). The
generator's own CPU time over the wall time of all cores is ``generator_cpu_share`` (a share
near the cores' count over the processes' would mean the generator, not the server, is
measured).

Prints a table, one JSON line with the details (every step), and as the LAST line one JSON
object::

    {"engines": {"sqlite": {"capacity_rps": ..., "errors": ...,
                            "routes": {"steer": {"p50_ms": ..., "p99_ms": ...}, ...}},
                 "postgres": {...}},
     "generator_cpu_share": ...}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    cpu_share,
    database,
    host_port,
    percentile,
    raw_request,
    server,
)
from core.settings import Settings  # noqa: E402

ROUTES = ("latent list", "latent page", "user page", "steer")
PAGES = ("latent list", "latent page", "user page")
RUN_ID = "load"


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


# --- the generator (its own process) ------------------------------------------------------------


def _mix(rng: Any, n_users: int, n_latents: int) -> tuple[str, str, str, bytes]:
    """One request of a person browsing: (route, method, path, body), ratio 2:3:2:3."""
    route = rng.choices(ROUTES, weights=(2, 3, 2, 3))[0]
    if route == "latent list":
        sort = rng.choice(("confidence", "llm_confidence", "density", "id"))
        return route, "GET", f"/runs/{RUN_ID}/latents?_sort={sort}&_page={rng.randint(1, 5)}", b""
    if route == "latent page":
        return route, "GET", f"/runs/{RUN_ID}/latents/{rng.randrange(n_latents)}", b""
    if route == "user page":
        return route, "GET", f"/runs/{RUN_ID}/users/{rng.randrange(n_users)}", b""
    latents = rng.sample(range(n_latents), rng.randint(1, 3))
    body = {
        "edits": [{"latent": j, "value": round(rng.uniform(-3, 3), 3)} for j in latents],
        "mode": "replace" if rng.random() < 0.3 else "error_preserving",
    }
    path = f"/api/runs/{RUN_ID}/users/{rng.randrange(n_users)}/steer"
    return route, "POST", path, json.dumps(body).encode()


async def _one(base: str, method: str, path: str, body: bytes) -> int | str:
    """One request on its own connection, as the explorer's pages and script send it; the
    status, or what went wrong."""
    host, port = host_port(base)
    page = {"Accept": "text/html", "Origin": f"http://{host}:{port}"}
    status, _, _ = await raw_request(base, method, path, body, timeout_s=30, headers=page)
    return status


async def _generate(base: str, rate: float, seconds: float, n_users: int, n_latents: int) -> dict:
    """Requests scheduled at ``rate`` per second for ``seconds``; latency from the schedule."""
    import asyncio
    import random
    import resource

    rng = random.Random(0)
    n = int(rate * seconds)
    plan = [_mix(rng, n_users, n_latents) for _ in range(n)]
    results: list[tuple[str, float, int | str]] = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter() + 0.1

    async def send(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        route, method, path, body = plan[i]
        status = await _one(base, method, path, body)
        results.append((route, (time.perf_counter() - due) * 1000, status))

    await asyncio.gather(*(send(i) for i in range(n)))
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    routes: dict[str, Any] = {}
    for route in ROUTES:
        lat = [ms for r, ms, _ in results if r == route]
        if lat:
            routes[route] = {
                "p50_ms": percentile(lat, 0.5),
                "p99_ms": percentile(lat, 0.99),
                "requests": len(lat),
            }
    errors = [str(st) for _, _, st in results if st != 200]
    return {
        "rate": rate,
        "achieved_rps": round(len(results) / wall, 1),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:5],
        "routes": routes,
        "generator_cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
    }


def generate(base: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """Run the generator in its own process (this file, ``--generate``) and read its answer."""
    cmd = [
        sys.executable, str(Path(__file__)), "--generate", base, "--rate", str(rate),
        "--seconds", str(args.seconds), "--users-in-run", str(args.users_in_run),
        "--latents", str(args.latents),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.seconds + 90)
    if proc.returncode != 0:
        raise RuntimeError(f"generator failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def held(step: dict[str, Any]) -> bool:
    """The targets: no error, p99 < 250 ms for every page, < 50 ms for steering."""
    routes = step["routes"]
    return (
        step["errors"] == 0
        and routes.get("steer", {}).get("p99_ms", 1e9) < 50
        and all(routes.get(p, {}).get("p99_ms", 1e9) < 250 for p in PAGES)
    )


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"load-{engine}-") as tmp:
        data_dir = Path(tmp)
        with database(engine, data_dir) as url:
            build_s = build(url, data_dir, args)
            settings = Settings(data_dir=data_dir, database_url=url)
            with server(settings, args.workers) as base:
                warm(base, args)
                steps = []
                capacity = 0.0
                for rate in (float(r) for r in args.steps.split(",")):
                    step = generate(base, rate, args)
                    steps.append(step)
                    if not held(step):
                        break
                    capacity = rate
                fixed = generate(base, args.rate, args)
    return {"capacity_rps": capacity, "fixed": fixed, "steps": steps, "build_s": round(build_s, 1)}


def generator_cpu_share(results: dict[str, dict[str, Any]]) -> float:
    """The generator's CPU seconds over the wall seconds of every core, over all its runs."""
    runs = [s for r in results.values() for s in (*r["steps"], r["fixed"])]
    return cpu_share(sum(s["generator_cpu_s"] for s in runs), sum(s["wall_s"] for s in runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20, help="seconds per rate step")
    p.add_argument("--steps", default="25,50,100,200,400", help="arrival rates tried, req/s")
    p.add_argument("--rate", type=float, default=50, help="the fixed rate of the route figures")
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users-in-run", type=int, default=2000, help="the run's recommender users")
    p.add_argument("--latents", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--generate", metavar="BASE_URL", help=argparse.SUPPRESS)  # the generator
    args = p.parse_args()
    if args.generate:
        import asyncio

        figures = _generate(args.generate, args.rate, args.seconds, args.users_in_run, args.latents)
        print(json.dumps(asyncio.run(figures)))
        return

    engines = {name: measure(name, args) for name in args.engines.split(",")}
    share = generator_cpu_share(engines)
    print(
        f"open loop, {args.seconds}s per step, steps {args.steps} req/s, fixed {args.rate} req/s; "
        f"uvicorn workers={args.workers}; run: {args.items:,} items, {args.users_in_run:,} users, "
        f"{args.latents} latents; generator CPU share {share}"
    )
    print(
        f"{'engine':<10}{'rate':>6}{'got':>7}{'errors':>8}  " + "".join(f"{r:>14}" for r in ROUTES)
    )
    for name, r in engines.items():
        for step in (*r["steps"], r["fixed"]):
            p99 = "".join(
                f"{step['routes'].get(route, {}).get('p99_ms', float('nan')):>11.0f} ms"
                for route in ROUTES
            )
            print(
                f"{name:<10}{step['rate']:>6.0f}{step['achieved_rps']:>7.0f}"
                f"{step['errors']:>8}  {p99}"
            )
        print(
            f"{name:<10}capacity {r['capacity_rps']} req/s (p99 columns; last row: the fixed rate)"
        )
    print(json.dumps({"details": engines}))
    last = {
        name: {
            "capacity_rps": r["capacity_rps"],
            "errors": r["fixed"]["errors"],
            "routes": {
                route: {"p50_ms": f["p50_ms"], "p99_ms": f["p99_ms"]}
                for route, f in r["fixed"]["routes"].items()
            },
        }
        for name, r in engines.items()
    }
    print(json.dumps({"engines": last, "generator_cpu_share": share}))


if __name__ == "__main__":
    main()
