"""Steering latency benchmark: a 100,000-item run served by uvicorn on loopback.

    .venv/bin/python benchmarks/steer.py                       # defaults: 100k items, 2 workers
    .venv/bin/python benchmarks/steer.py --rate 200 --open-s 30 --closed-s 15 --clients 32

(a) open loop: requests are *scheduled* at a fixed rate on a clock and sent on ``--connections``
keep-alive connections as each comes free; latency runs from the scheduled send time, so a slow
server cannot hide queueing delay (no coordinated omission). (b) closed loop: ``--clients``
clients each send the next request, on a free connection of the same pool, as soon as the last
one answers; throughput in requests/s. Each request steers a random user with 1–3 random edits
(mixed active/inactive latents) in a random mode. Before both, ``--sequential`` requests one
after another on one connection. Every loop counts an answer other than 2xx (and a request
without an answer) as an error, and prints the count it measured. The client is a few lines of
asyncio (:class:`benchmarks.common.KeepAlive`), not httpx: httpx spent milliseconds of CPU per
request on the two cores the server needs, and its pool slows quadratically with queued
requests (an open loop once spun the client for 10 minutes); each loop reports the client's
share of the cores (``client_cpu_share``). Prints a table, and as the LAST line one JSON object.
Targets: p99 < 25 ms at 200 req/s, zero errors in every loop, >= 800 req/s closed-loop.

``--over-rate R`` adds (c): an open loop at R req/s, above capacity, each request on its own
connection: a full server answers 503 with Retry-After (counted apart), never a time-out.
``--baseline DIR`` measures older code with the same client: rounds alternate DIR's server and
this checkout's (each building its run with its own code), and the JSON gets ``baseline`` with
every round and the ratios (this / baseline)::

    git worktree add /tmp/wt-3ae560f 3ae560f
    .venv/bin/python benchmarks/steer.py --baseline /tmp/wt-3ae560f --over-rate 1500 \
        --baseline-python /tmp/venv-3ae560f/bin/python   # 3ae560f also needs swagger-ui-bundle

The run is :func:`tests.backend.synthetic_run.make_run` (planted tag concepts, artifacts +
database rows), the same factory the steering tests build their fixture run with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import KeepAlive, cpu_share  # noqa: E402
from core.net import free_port  # noqa: E402
from tests.backend.synthetic_run import make_run  # noqa: E402

# --- the benchmark ------------------------------------------------------------------------------


def _bodies(n: int, n_users: int, n_latents: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
    """Random steering requests: a user and 1–3 edits; values safe for active and inactive."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        user = int(rng.integers(n_users))
        latents = rng.choice(n_latents, size=int(rng.integers(1, 4)), replace=False)
        edits = [{"latent": int(j), "value": float(rng.uniform(-3, 3))} for j in latents]
        mode = "replace" if rng.random() < 0.3 else "error_preserving"
        out.append((user, {"edits": edits, "mode": mode}))
    return out


def _requests(run_id: str, bodies: list, base: str) -> list[bytes]:
    """Every body as the bytes of its POST, built once before the clock starts."""
    conn = KeepAlive(base)
    return [
        conn.post_json(f"/api/runs/{run_id}/users/{user}/steer", json.dumps(body).encode())
        for user, body in bodies
    ]


def _failed(status: int | str, body: bytes) -> str | None:
    """What went wrong with an answer, None for a 2xx."""
    if isinstance(status, int) and 200 <= status < 300:
        return None
    return f"{status}: {body[:200].decode('utf-8', 'replace')}"


async def _open_loop(
    base: str, requests: list[bytes], rate: float, seconds: float, connections: int
) -> dict:
    """Requests scheduled at ``rate`` on a clock, sent by ``connections`` keep-alive connections
    as each comes free; latency runs from the scheduled time, so a request that waits for a free
    connection (a slow server) counts its wait."""
    n = int(rate * seconds)
    lat_ms: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def sender() -> None:
        conn = KeepAlive(base)
        while (job := await queue.get()) is not None:
            i, scheduled = job
            status, body = await conn.send(requests[i % len(requests)])
            if (error := _failed(status, body)) is not None:
                errors.append(error)
            lat_ms.append((time.perf_counter() - scheduled) * 1000)
        conn.close()

    senders = [asyncio.create_task(sender()) for _ in range(connections)]
    cpu0, t0 = time.process_time(), time.perf_counter() + 0.05
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, scheduled))
    for _ in senders:
        queue.put_nowait(None)
    await asyncio.gather(*senders)
    wall = time.perf_counter() - t0
    a = np.asarray(lat_ms)
    return {
        "requests": n,
        "rate": rate,
        "achieved_rps": round(n / wall, 1),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "client_cpu_share": cpu_share(time.process_time() - cpu0, wall),
    }


async def _closed_loop(
    base: str, requests: list[bytes], clients: int, seconds: float, connections: int
) -> dict:
    """``clients`` clients, each sending its next request as soon as the last one is answered,
    on whichever of ``connections`` keep-alive connections is free. A connection stays with the
    server process that accepted it; with a connection per client, the luck of that split (16
    clients on one worker, none on the other) would be measured, not the server: with more
    connections than clients, each request goes to a free one, on whichever process is free."""
    done = 0
    errors: list[str] = []
    lat_ms: list[float] = []
    stop = time.perf_counter() + seconds
    # Last in, first out: the connection answered last is used next, so the process that
    # answers faster gets more of the requests instead of the same share.
    pool: asyncio.LifoQueue[KeepAlive] = asyncio.LifoQueue()
    for _ in range(max(connections, clients)):
        pool.put_nowait(KeepAlive(base))

    async def client(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < stop:
            conn = await pool.get()
            t = time.perf_counter()
            status, body = await conn.send(requests[i % len(requests)])
            lat_ms.append((time.perf_counter() - t) * 1000)
            pool.put_nowait(conn)
            if (error := _failed(status, body)) is not None:
                errors.append(error)
            done += 1
            i += clients

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(w) for w in range(clients)))
    elapsed = time.perf_counter() - t0
    while not pool.empty():
        pool.get_nowait().close()
    a = np.asarray(lat_ms)
    return {
        "clients": clients,
        "connections": max(connections, clients),
        "requests": done,
        "rps": done / elapsed,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "client_cpu_share": cpu_share(time.process_time() - cpu0, elapsed),
    }


async def _sequential(base: str, requests: list[bytes], n: int) -> dict:
    """``n`` requests one after another on one keep-alive connection."""
    lat_ms: list[float] = []
    errors: list[str] = []
    conn = KeepAlive(base)
    for request in requests[:n]:
        t1 = time.perf_counter()
        status, body = await conn.send(request)
        if (error := _failed(status, body)) is not None:
            errors.append(error)
        lat_ms.append((time.perf_counter() - t1) * 1000)
    conn.close()
    return {
        "requests": len(lat_ms),
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def _overload(base: str, run_id: str, bodies: list, rate: float, seconds: float) -> dict:
    """Requests scheduled at ``rate`` (above capacity), each on its own connection (the bare
    client of benchmarks/common.py, so the generator keeps up): a full server must refuse
    quickly (503 with Retry-After, docs/scaling.md "Admission"), never time out."""
    from benchmarks.common import percentile, raw_request

    n = int(rate * seconds)
    results: list[tuple[int | str, float, bool]] = []
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        user, body = bodies[i % len(bodies)]
        path = f"/api/runs/{run_id}/users/{user}/steer"
        status, _, headers = await raw_request(base, "POST", path, json.dumps(body).encode(), 10.0)
        results.append((status, (time.perf_counter() - due) * 1000, "retry-after" in headers))

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    ok = [ms for st, ms, _ in results if st == 200]
    refused = [ms for st, ms, retry in results if st == 503 and retry]
    return {
        "requests": n,
        "rate": rate,
        "achieved_rps": round(n / wall, 1),
        "ok": len(ok),
        "rejected_503": len(refused),
        "timeouts": sum(st == "timeout" for st, _, _ in results),
        "errors_other": len(results) - len(ok) - len(refused),
        "ok_p99_ms": percentile(ok, 0.99),
        "rejected_p99_ms": percentile(refused, 0.99),
    }


def _build(repo: Path, python: str, data_dir: Path, url: str, args: argparse.Namespace) -> str:
    """Migrate and publish the synthetic run with ``repo``'s own code (an older checkout has its
    own schema and factory); returns the run's id."""
    if repo == REPO:
        from core.store import migrate
        from core.store.engine import session_factory

        migrate.upgrade(url)
        run = make_run(
            data_dir, session_factory(url), "bench", args.items, args.users, 64, args.latents,
            args.k, seed=args.seed,
        )  # fmt: skip
        return run.run_id
    # Older checkouts: the factory lived in benchmarks/steer.py and the store in backend/store.
    script = f"""
import sys
try:
    from tests.backend.synthetic_run import make_run
    from core.store import migrate
    from core.store.engine import session_factory
except ImportError:
    from benchmarks.steer import make_run
    from backend.store import migrate
    from backend.store.engine import session_factory
from pathlib import Path
migrate.upgrade({url!r})
make_run(Path({str(data_dir)!r}), session_factory({url!r}), "bench", {args.items}, {args.users},
         64, {args.latents}, {args.k}, seed={args.seed})
"""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([python, "-c", script], cwd=repo, env=env, check=True)
    return "bench"


def measure(repo: Path, python: str, args: argparse.Namespace, bodies: list) -> dict[str, Any]:
    """One round: a fresh run built and served by ``repo``'s code (run by ``python``), then the
    loops."""
    with tempfile.TemporaryDirectory(prefix="steer-bench-") as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'recsae.db'}"
        t = time.perf_counter()
        run_id = _build(repo, python, data_dir, url, args)
        build_s = time.perf_counter() - t
        port = free_port()
        env = {
            **os.environ,
            "RECSAE_DATA_DIR": str(data_dir),
            "RECSAE_DATABASE_URL": url,
            "PYTHONPATH": str(repo),
            # One BLAS thread per worker: the workers are the parallelism.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        cmd = [
            python, "-m", "backend.serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers), "--no-access-log",
        ]  # fmt: skip
        server = subprocess.Popen(cmd, cwd=repo, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.time() + 120
            while True:  # wait for the server, then warm every worker's engine
                try:
                    if httpx.get(f"{base}/runs/{run_id}.json", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start (exit code {server.poll()})")
                time.sleep(0.3)
            t = time.perf_counter()
            for user, body in bodies[: 8 * args.workers]:
                r = httpx.post(
                    f"{base}/api/runs/{run_id}/users/{user}/steer", json=body, timeout=120
                )
                r.raise_for_status()
            warm_s = time.perf_counter() - t
            requests = _requests(run_id, bodies, base)
            seq_r = asyncio.run(_sequential(base, requests, args.sequential))
            open_r = asyncio.run(
                _open_loop(base, requests, args.rate, args.open_s, args.connections)
            )
            closed_r = asyncio.run(
                _closed_loop(base, requests, args.clients, args.closed_s, args.connections)
            )
            over_r = None
            if args.over_rate > 0:
                over_r = asyncio.run(_overload(base, run_id, bodies, args.over_rate, args.over_s))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "code": str(repo),
        "build_s": round(build_s, 1),
        "warm_s": round(warm_s, 1),
        "sequential": seq_r,
        "open_loop": open_r,
        "closed_loop": closed_r,
        "overload": over_r,
    }


def _table(label: str, r: dict[str, Any], args: argparse.Namespace) -> None:
    seq_r, open_r, closed_r = r["sequential"], r["open_loop"], r["closed_loop"]
    print(f"{label}: {r['code']} (built in {r['build_s']}s, engines warmed in {r['warm_s']}s)")
    print(f"{'test':<28}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'errors':>8}")
    print(
        f"{'sequential, 1 client':<28}{seq_r['requests']:>10}{seq_r['p50_ms']:>10.2f}"
        f"{seq_r['p99_ms']:>10.2f}{'-':>10}{seq_r['errors']:>8}"
    )
    print(
        f"{f'open loop @ {args.rate:g} req/s':<28}{open_r['requests']:>10}"
        f"{open_r['p50_ms']:>10.2f}{open_r['p99_ms']:>10.2f}{'-':>10}{open_r['errors']:>8}"
    )
    print(
        f"{f'closed loop, {args.clients} clients':<28}{closed_r['requests']:>10}"
        f"{closed_r['p50_ms']:>10.2f}{closed_r['p99_ms']:>10.2f}{closed_r['rps']:>10.1f}"
        f"{closed_r['errors']:>8}"
    )
    over = r["overload"]
    if over is not None:
        print(
            f"  overload @ {over['rate']:g} req/s (got {over['achieved_rps']}): {over['ok']} ok "
            f"(p99 {over['ok_p99_ms']} ms), {over['rejected_503']} 503 (p99 "
            f"{over['rejected_p99_ms']} ms), {over['timeouts']} time-outs, "
            f"{over['errors_other']} other"
        )
    for name, loop in (("sequential", seq_r), ("open loop", open_r), ("closed loop", closed_r)):
        if loop["errors"] and loop.get("first_error"):
            print(f"  {name}: first error {loop['first_error']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--latents", type=int, default=1024)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--open-s", type=float, default=30.0)
    p.add_argument("--closed-s", type=float, default=15.0)
    p.add_argument("--clients", type=int, default=32, help="requests in flight, closed loop")
    p.add_argument(
        "--connections", type=int, default=64,
        help="keep-alive connections each loop sends on, a free one per request",
    )  # fmt: skip
    p.add_argument("--sequential", type=int, default=200, help="requests of the sequential loop")
    p.add_argument(
        "--over-rate", type=float, default=0.0,
        help="an open loop above capacity at this rate (0: none): 503s, never time-outs",
    )  # fmt: skip
    p.add_argument("--over-s", type=float, default=5.0, help="seconds of the overload loop")
    p.add_argument(
        "--baseline", type=Path, default=None,
        help="a checkout of older code (git worktree add /tmp/wt-3ae560f 3ae560f): rounds "
        "alternate baseline / this code (--rounds pairs) with the same client",
    )  # fmt: skip
    p.add_argument(
        "--baseline-python", default=sys.executable,
        help="the interpreter of the baseline (its own dependencies), default this one",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=2, help="baseline/current pairs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.sequential < 1 or args.rate * args.open_s < 1:
        p.error("--sequential and --rate x --open-s must give at least one request each")
    if args.baseline is not None and not (args.baseline / "backend" / "serve.py").is_file():
        p.error(
            f"--baseline {args.baseline} is not a checkout of this project (no backend/serve.py)"
        )

    bodies = _bodies(4096, args.users, args.latents, args.seed)
    current = (REPO, sys.executable)
    order = [current]
    if args.baseline is not None:
        order = [(args.baseline.resolve(), args.baseline_python), current] * args.rounds
    rounds = [measure(repo, python, args, bodies) for repo, python in order]
    print(
        f"run: {args.items:,} items, {args.users:,} users, {args.latents} latents, k={args.k}; "
        f"uvicorn workers={args.workers}; load average {os.getloadavg()[0]:.1f}"
    )
    for i, r in enumerate(rounds):
        _table(f"round {i + 1}", r, args)
    mine = [r for r in rounds if r["code"] == str(REPO)]
    last = mine[-1]
    seq_r, open_r, closed_r = last["sequential"], last["open_loop"], last["closed_loop"]
    targets = {
        "p99_lt_25ms": open_r["p99_ms"] < 25,
        "zero_errors": seq_r["errors"] == open_r["errors"] == closed_r["errors"] == 0,
        "rps_ge_800": closed_r["rps"] >= 800,
    }
    over = last["overload"]
    if over is not None:
        targets["overload_no_timeouts"] = over["timeouts"] == 0 and over["errors_other"] == 0
    out: dict[str, Any] = {
        "benchmark": "steer",
        "items": args.items,
        "users": args.users,
        "latents": args.latents,
        "k": args.k,
        "workers": args.workers,
        "sequential": seq_r,
        "open_loop": open_r,
        "closed_loop": closed_r,
        "overload": over,
        "targets": targets,
    }
    if args.baseline is not None:
        base = [r for r in rounds if r["code"] != str(REPO)]

        def mean(rs: list[dict[str, Any]], loop: str, key: str) -> float:
            return sum(r[loop][key] for r in rs) / len(rs)

        out["baseline"] = {
            "code": str(args.baseline),
            "rounds": [
                {"code": r["code"], "closed_rps": round(r["closed_loop"]["rps"], 1),
                 "sequential_p50_ms": round(r["sequential"]["p50_ms"], 2),
                 "open_p99_ms": round(r["open_loop"]["p99_ms"], 2)}
                for r in rounds
            ],
            "closed_rps_ratio": round(
                mean(mine, "closed_loop", "rps") / mean(base, "closed_loop", "rps"), 3
            ),
            "sequential_p50_ratio": round(
                mean(mine, "sequential", "p50_ms") / mean(base, "sequential", "p50_ms"), 3
            ),
        }  # fmt: skip
        print(f"ratio to {args.baseline} (this / baseline, mean of the rounds): "
              f"closed-loop req/s {out['baseline']['closed_rps_ratio']}, sequential p50 "
              f"{out['baseline']['sequential_p50_ratio']}")  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
