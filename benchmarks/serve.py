"""Latency of the explorer's two busiest pages over a real uvicorn server (target: median < 50 ms).

    .venv/bin/python -m benchmarks.serve [--requests 200]

Serves the demo DB (``<data_dir>/recsae.db``) if it holds a run, else a generated run with 1024
latents (15 examples of 20-item histories each, as the worker writes). Sequential requests on one
keep-alive connection; the last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: python benchmarks/serve.py

from backend.serve import background_server  # noqa: E402
from core.settings import Settings, get_settings  # noqa: E402
from core.store import migrate  # noqa: E402
from core.store.engine import session_factory  # noqa: E402
from core.store.schema import Run  # noqa: E402
from tests.backend.factories import fixture_rows  # noqa: E402

N_LATENTS = 1024


def demo_run(settings: Settings) -> tuple[str, int] | None:
    """(run id, n_latents) of the newest run in the configured DB, or None if there is none."""
    db = settings.data_dir / "recsae.db"
    if settings.database_url is None and not db.is_file():
        return None
    migrate.upgrade(settings.resolved_database_url)
    with session_factory(settings.resolved_database_url)() as session:
        if not session.scalar(select(func.count()).select_from(Run)):
            return None
        run = session.scalars(select(Run).order_by(Run.created_at.desc())).first()
        assert run is not None
        return run.id, run.n_latents


def generated_settings(data_dir: Path) -> Settings:
    """A DB with one realistic-size run: 1024 latents, 2000 items, 600 users."""
    from core.store.writes import publish_run

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    rows = fixture_rows(run_id="bench", n_items=2000, n_users=600, n_latents=N_LATENTS, k=8)
    n_items = 2000
    examples: list[dict[str, Any]] = []
    for ex in rows["examples"]:  # 2 per role -> 5 per role, histories of 20 (docs/method.md §1.7)
        for copy in range(3 if ex["activation"] > 1.5 or ex["role"] == "random" else 2):
            history = [(ex["latent_idx"] * 7 + copy * 31 + j) % n_items for j in range(20)]
            examples.append({**ex, "user_idx": (ex["user_idx"] + copy) % 600, "history": history})
    rows["examples"] = examples
    publish_run(session_factory(settings.resolved_database_url), **rows)
    return settings


def time_requests(client: httpx.Client, urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        start = time.perf_counter()
        response = client.get(url, headers={"accept": "text/html"})
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} -> {response.status_code}: {response.text[:200]}")
    return times


def summarise(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "n": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    settings = get_settings()
    found = demo_run(settings)
    with tempfile.TemporaryDirectory() as tmp:
        if found is None:
            settings = generated_settings(Path(tmp))
            run_id, n_latents, source = "bench", N_LATENTS, "generated"
        else:
            (run_id, n_latents), source = found, "demo"
        with background_server(settings) as base, httpx.Client(base_url=base) as client:
            pages = {
                "latent list": [f"/runs/{run_id}/latents"] * args.requests,
                "latent page": [
                    f"/runs/{run_id}/latents/{(i * 37) % n_latents}" for i in range(args.requests)
                ],
            }
            results = {}
            for name, urls in pages.items():
                time_requests(client, urls[:10])  # warm-up: imports, caches, first plots
                results[name] = summarise(time_requests(client, urls))

    print(f"run {run_id!r} ({source}, {n_latents} latents), {args.requests} requests each")
    print(f"{'page':<14}{'median ms':>12}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<14}{r['median_ms']:>12.2f}{r['p99_ms']:>10.2f}")
    print(json.dumps({"run": run_id, "source": source, "n_latents": n_latents, **results}))


if __name__ == "__main__":
    main()
