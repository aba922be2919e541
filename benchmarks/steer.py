"""Steering latency benchmark: a 100,000-item run served by uvicorn on loopback.

    .venv/bin/python benchmarks/steer.py                       # defaults: 100k items, 2 workers
    .venv/bin/python benchmarks/steer.py --rate 200 --open-s 30 --closed-s 15 --clients 32

(a) open loop: requests are *scheduled* at a fixed rate on a clock and sent by async httpx;
latency runs from the scheduled send time, so a slow server cannot hide queueing delay
(no coordinated omission). (b) closed loop: ``--clients`` clients each send the next request as
soon as the last one answers; throughput in requests/s. Each request steers a random user with
1–3 random edits (mixed active/inactive latents) in a random mode.
Prints a table, and as the LAST line one JSON object. Targets: p99 < 25 ms at 200 req/s, zero
errors, >= 400 req/s closed-loop.

:func:`make_run` (a synthetic run with planted tag concepts, artifacts + database rows) is also
what the steering tests build their fixture run with.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from core.net import free_port

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from core.store.writes import publish_run  # noqa: E402

GENRES = [
    "action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama",
    "fantasy", "horror", "musical", "mystery", "romance", "scifi", "thriller", "war", "western",
]  # fmt: skip
WORDS = ["night", "river", "city", "dream", "story", "king", "love", "last", "dark", "summer"]


@dataclass
class SyntheticRun:
    run_id: str
    artifact_dir: Path
    tags: list[str]  # tag t is the TF-IDF concept of latent t (t < len(tags))
    item_tags: np.ndarray  # [n_items, 2] tag indices
    test_users: np.ndarray  # user idx on the test side


def make_run(
    data_dir: Path,
    sessions: sessionmaker[Session],
    run_id: str = "steer-synthetic",
    n_items: int = 2000,
    n_users: int = 200,
    d: int = 64,
    n_latents: int = 1024,
    k: int = 8,
    n_tags: int = 60,
    seed: int = 0,
) -> SyntheticRun:
    """Write ``<data_dir>/runs/<run_id>/`` (SAELens-style SAE + vectors) and publish its rows.

    Realistic structure rather than pure noise: every tag has a unit direction; the first
    ``n_tags`` decoder rows are those directions (so latent t's concept is tag t), the rest
    random unit vectors; W_enc = W_dec^T. Items carry 2 tags (Zipf popularity) and embed as the
    sum of their tag directions plus noise; users prefer 2 tags, and their vectors, histories and
    test items follow those preferences.
    """
    if n_tags > n_latents:
        raise ValueError(f"n_tags ({n_tags}) must be <= n_latents ({n_latents})")
    rng = np.random.default_rng(seed)
    tags = (GENRES + [f"theme{t:03d}" for t in range(n_tags)])[:n_tags]
    T = rng.standard_normal((n_tags, d)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    W_dec = rng.standard_normal((n_latents, d)).astype(np.float32)
    W_dec[:n_tags] = T
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    W_enc = np.ascontiguousarray(W_dec.T)
    b_enc = np.zeros(n_latents, np.float32)
    b_dec = (0.05 * rng.standard_normal(d)).astype(np.float32)

    tag_p = 1.0 / np.arange(1, n_tags + 1) ** 0.7
    tag_p /= tag_p.sum()
    item_tags = np.stack(
        [rng.choice(n_tags, size=2, replace=False, p=tag_p) for _ in range(n_items)]
    )
    E = T[item_tags].sum(1) + 0.6 * rng.standard_normal((n_items, d)).astype(np.float32)
    E = E.astype(np.float32)
    items_with = [np.flatnonzero((item_tags == t).any(1)) for t in range(n_tags)]

    user_tags = np.stack(
        [rng.choice(n_tags, size=2, replace=False, p=tag_p) for _ in range(n_users)]
    )
    strength = rng.uniform(0.5, 2.0, size=(n_users, 2, 1)).astype(np.float32)
    X = (T[user_tags] * strength).sum(1) + 0.3 * rng.standard_normal((n_users, d))
    X = (X + b_dec).astype(np.float32)

    users, test_users = [], []
    for u in range(n_users):
        pool = np.concatenate([items_with[t] for t in user_tags[u]])
        length = int(rng.integers(8, 40))
        seq = rng.choice(pool, size=min(length + 2, pool.size), replace=False)
        side = "test" if u % 2 == 0 else "train"
        if side == "test":
            test_users.append(u)
        users.append(
            {
                "idx": u,
                "external_id": f"u{u}",
                "history": [int(i) for i in seq[:-2]],
                "dev_item": int(seq[-2]),
                "test_item": int(seq[-1]),
                "side": side,
            }
        )
    popularity = np.bincount(
        np.concatenate([np.asarray(u["history"], dtype=np.int64) for u in users]),
        minlength=n_items,
    )
    items = []
    for i in range(n_items):
        t0, t1 = (tags[t] for t in item_tags[i])
        title = f"The {WORDS[i % len(WORDS)].title()} {i}"
        genres = [t for t in (t0, t1) if t in GENRES]
        item_tag_list = [t for t in (t0, t1) if t not in GENRES]
        items.append(
            {
                "idx": i,
                "external_id": str(i),
                "title": title,
                "genres": genres,
                "tags": item_tag_list,
                "text": " ".join([title, *genres, *item_tag_list]),
                "popularity": int(popularity[i]),
            }
        )
    latents = [
        {
            "idx": j,
            "density": 0.01,
            "max_activation": 1.0,
            "mean_activation": 0.5,
            "tfidf_concept": tags[j] if j < n_tags else None,
            "tfidf_confidence": 0.9 if j < n_tags else None,
            "llm_concept": f"{tags[j]} titles" if j < n_tags else None,
        }
        for j in range(n_latents)
    ]

    art = Path(data_dir) / "runs" / run_id
    (art / "sae").mkdir(parents=True, exist_ok=True)
    (art / "sae" / "cfg.json").write_text(json.dumps({"d_in": d, "d_sae": n_latents, "k": k}))
    save_file(
        {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec},
        str(art / "sae" / "sae_weights.safetensors"),
    )
    save_file({"item_embeddings": E, "user_vectors": X}, str(art / "vectors.safetensors"))
    run = {
        "id": run_id,
        "dataset": "synthetic",
        "recommender": "synthetic",
        "artifact_dir": str(art),
        "n_users": n_users,
        "n_items": n_items,
        "n_latents": n_latents,
        "k": k,
        "item_category": "movies",
        "item_name": "movie",
    }
    publish_run(sessions, run, items, users, latents, [], [], [])
    return SyntheticRun(run_id, art, tags, item_tags, np.asarray(test_users, dtype=np.int64))


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
                if r.status_code != 200:
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
    errors = 0
    lat_ms: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=10.0, transport=_transport()
    ) as client:

        async def worker(w: int) -> None:
            nonlocal done, errors
            i = w
            while time.perf_counter() < stop:
                user, body = bodies[i % len(bodies)]
                t = time.perf_counter()
                try:
                    r = await client.post(f"/api/runs/{run_id}/users/{user}/steer", json=body)
                    errors += r.status_code != 200
                except httpx.HTTPError:
                    errors += 1
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
        "errors": errors,
    }


def main() -> None:
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
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

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
            seq_ms = []
            with httpx.Client(base_url=base, transport=httpx.HTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )) as c:  # fmt: skip
                for user, body in bodies[:200]:
                    t1 = time.perf_counter()
                    c.post(f"/api/runs/{run.run_id}/users/{user}/steer", json=body)
                    seq_ms.append((time.perf_counter() - t1) * 1000)
            seq_r = {"requests": 200, "p50_ms": float(np.percentile(seq_ms, 50)),
                     "p99_ms": float(np.percentile(seq_ms, 99))}  # fmt: skip
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
        f"{seq_r['p99_ms']:>10.2f}{'-':>10}{0:>8}"
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
        "zero_errors": open_r["errors"] == 0 and closed_r["errors"] == 0,
        "rps_ge_400": closed_r["rps"] >= 400,
    }
    print(
        json.dumps(
            {
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
        )
    )


if __name__ == "__main__":
    main()
