"""Steering latency benchmark: a 100,000-item run served by uvicorn on loopback.

    .venv/bin/python benchmarks/steer.py                       # defaults: 100k items, 2 workers
    .venv/bin/python benchmarks/steer.py --rate 200 --open-s 30 --closed-s 15 --clients 32

(a) open loop: requests are *scheduled* at a fixed rate on a clock and sent by async httpx;
latency runs from the scheduled send time, so a slow server cannot hide queueing delay
(no coordinated omission). (b) closed loop: ``--clients`` clients each send the next request as
soon as the last one answers; throughput in requests/s. Each request steers a random user with
1–3 random edits (mixed active/inactive latents) in a random mode.
Before both, ``--sequential`` requests one after another on one connection. Every loop counts
an answer other than 2xx (and a request without an answer) as an error, and prints the count it
measured. Prints a table, and as the LAST line one JSON object. Targets: p99 < 25 ms at 200
req/s, zero errors in every loop, >= 400 req/s closed-loop.

The run is :func:`tests.backend.synthetic_run.make_run` (planted tag concepts, artifacts +
database rows), the same factory the steering tests build their fixture run with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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


def _transport() -> Any:  # httpx.AsyncHTTPTransport; httpx is imported lazily here
    """A client transport with TCP_NODELAY, as browsers and production HTTP clients use.

    httpx writes a POST's headers and body in two sends; with Nagle's algorithm on, the body
    waits for the server's (delayed, ~40 ms on Linux) ACK of the headers, which would put a
    40 ms floor under every measured request that has nothing to do with the server.
    """
    import httpx

    return httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


async def _open_loop(base: str, run_id: str, bodies: list, rate: float, seconds: float) -> dict:
    import httpx

    n = int(rate * seconds)
    lat_ms: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=10.0, transport=_transport()
    ) as client:

        async def one(i: int, scheduled: float) -> None:
            user, body = bodies[i % len(bodies)]
            try:
                r = await client.post(f"/api/runs/{run_id}/users/{user}/steer", json=body)
                if not r.is_success:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            lat_ms.append((time.perf_counter() - scheduled) * 1000)

        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    a = np.asarray(lat_ms)
    return {
        "requests": n,
        "rate": rate,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def _closed_loop(base: str, run_id: str, bodies: list, clients: int, seconds: float) -> dict:
    import httpx

    done = 0
    errors: list[str] = []
    lat_ms: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=10.0, transport=_transport()
    ) as client:

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < stop:
                user, body = bodies[i % len(bodies)]
                t = time.perf_counter()
                try:
                    r = await client.post(f"/api/runs/{run_id}/users/{user}/steer", json=body)
                    if not r.is_success:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                lat_ms.append((time.perf_counter() - t) * 1000)
                done += 1
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - t0
    a = np.asarray(lat_ms)
    return {
        "clients": clients,
        "requests": done,
        "rps": done / elapsed,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def _sequential(base: str, run_id: str, bodies: list, n: int) -> dict:
    """``n`` requests one after another on one keep-alive connection."""
    import httpx

    lat_ms: list[float] = []
    errors: list[str] = []
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(base_url=base, transport=transport, timeout=10.0) as c:
        for user, body in bodies[:n]:
            t1 = time.perf_counter()
            try:
                r = c.post(f"/api/runs/{run_id}/users/{user}/steer", json=body)
                if not r.is_success:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            lat_ms.append((time.perf_counter() - t1) * 1000)
    return {
        "requests": len(lat_ms),
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


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
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--sequential", type=int, default=200, help="requests of the sequential loop")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.sequential < 1 or args.rate * args.open_s < 1:
        p.error("--sequential and --rate x --open-s must give at least one request each")

    from core.store import migrate
    from core.store.engine import session_factory

    with tempfile.TemporaryDirectory(prefix="steer-bench-") as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'recsae.db'}"
        migrate.upgrade(url)
        t = time.perf_counter()
        run = make_run(
            data_dir, session_factory(url), "bench", args.items, args.users, 64, args.latents,
            args.k, seed=args.seed,
        )  # fmt: skip
        build_s = time.perf_counter() - t
        port = free_port()
        env = {
            **os.environ,
            "RECSAE_DATA_DIR": str(data_dir),
            "RECSAE_DATABASE_URL": url,
            # One BLAS thread per worker: the workers are the parallelism.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        cmd = [
            sys.executable, "-m", "backend.serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(args.workers), "--no-access-log",
        ]  # fmt: skip
        server = subprocess.Popen(cmd, cwd=REPO, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            bodies = _bodies(4096, args.users, args.latents, args.seed)
            deadline = time.time() + 120
            while True:  # wait for the server, then warm every worker's engine
                try:
                    if httpx.get(f"{base}/runs/{run.run_id}.json", timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start (exit code {server.poll()})")
                time.sleep(0.3)
            t = time.perf_counter()
            for user, body in bodies[: 8 * args.workers]:
                r = httpx.post(
                    f"{base}/api/runs/{run.run_id}/users/{user}/steer", json=body, timeout=120
                )
                r.raise_for_status()
            warm_s = time.perf_counter() - t
            seq_r = _sequential(base, run.run_id, bodies, args.sequential)
            open_r = asyncio.run(_open_loop(base, run.run_id, bodies, args.rate, args.open_s))
            closed_r = asyncio.run(
                _closed_loop(base, run.run_id, bodies, args.clients, args.closed_s)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"run: {args.items:,} items, {args.users:,} users, {args.latents} latents, k={args.k}; "
        f"built in {build_s:.1f}s, engines warmed in {warm_s:.1f}s; uvicorn workers={args.workers}"
    )
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
    targets = {
        "p99_lt_25ms": open_r["p99_ms"] < 25,
        "zero_errors": seq_r["errors"] == open_r["errors"] == closed_r["errors"] == 0,
        "rps_ge_400": closed_r["rps"] >= 400,
    }
    for name, loop in (("sequential", seq_r), ("open loop", open_r), ("closed loop", closed_r)):
        if loop["errors"] and loop.get("first_error"):
            print(f"  {name}: first error {loop['first_error']}")
    out = {
        "benchmark": "steer",
        "items": args.items,
        "users": args.users,
        "latents": args.latents,
        "k": args.k,
        "workers": args.workers,
        "sequential": seq_r,
        "open_loop": open_r,
        "closed_loop": closed_r,
        "targets": targets,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
