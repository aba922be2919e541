"""Benchmark the LLM concepts against the bundled local server (SmolLM2-135M on llama.cpp).

Explains and verifies ``--latents`` latents (from the demo DB ``var/recsae.db`` when it holds a
run, else synthetic genre latents over MovieLens titles): requests/s at concurrency 1 and 4
(fresh caches, so every request hits the server), then a rerun on the warm cache (hit rate,
target 100%; its requests to the server and the cache's answers per second, both measured), and
the share of unparseable answers. Then the permutation null of every confidence
(docs/method.md §1.11, ``--null`` other explanations per latent, 2N requests each). Every figure
is measured in this run; one that could not be (no case, no lookup) is null, never a stand-in 0.
Prints a table and, as its last line, one JSON object with the figures, among them
``unparseable_level_share`` (level answers), ``degenerate_share`` (latents whose label named
nothing twice), ``verified`` (confidence >= 0.8) and ``verified_over_null`` (also rejecting the
null at 5%: rank p <= 0.05 with n >= 19 draws, ``core.reports.is_verified``).

    .venv/bin/python benchmarks/llm.py [--latents 20] [--n 5] [--threads 2] [--null 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from core.llm.cache import LLMCache
from core.llm.client import LLMClient
from core.llm.concepts import (
    ItemLookup,
    LatentCases,
    LLMConcept,
    LLMConceptConfig,
    explain_latents,
)
from core.llm.null import llm_null
from core.llm.prompts import PromptContext, oneshot_kind
from core.llm.server import LocalLLM
from core.reports import details_null_p, details_null_p95, is_confident, is_verified
from core.settings import REPO_ROOT, get_settings

MOVIES = REPO_ROOT / "data" / "ml-latest-small" / "movies.csv"


def synthetic_latents(n_latents: int, n: int, seed: int) -> list[LatentCases]:
    """One latent per MovieLens genre: construction/verification predict that genre (levels
    6-10), random cases predict other genres (level 0); histories are random movies."""
    movies = pd.read_csv(MOVIES)
    genres = [g.split("|") for g in movies.genres]
    items = ItemLookup(movies.title.tolist(), genres)
    rng = random.Random(seed)
    names = sorted({g for gs in genres for g in gs if g != "(no genres listed)"})
    latents = []
    for lid in range(n_latents):
        genre = names[lid % len(names)]
        inside = [i for i, gs in enumerate(genres) if genre in gs]
        outside = [i for i, gs in enumerate(genres) if genre not in gs]

        def cases(pool: list[int], active: bool) -> list[tuple[list[int], int, int]]:
            return [
                (
                    rng.sample(range(len(genres)), 10),
                    rng.choice(pool),
                    rng.randint(6, 10) if active else 0,
                )
                for _ in range(n)
            ]

        latents.append(
            LatentCases.from_ids(
                lid, items, cases(inside, True), cases(inside, True), cases(outside, False)
            )
        )
    return latents


def demo_latents(n_latents: int) -> tuple[list[LatentCases], PromptContext] | None:
    """The first latents with examples of the newest run in the demo DB, if there is one."""
    db = get_settings().data_dir / "recsae.db"
    if not db.is_file():
        return None
    from core.store import reads
    from core.store.engine import session_factory

    with session_factory(f"sqlite:///{db}")() as session:
        runs = reads.list_runs(session)
        if not runs:
            return None
        run = runs[0]
        chosen: list[LatentCases] = []
        for idx in range(run.n_latents):
            examples = reads.latent_examples(session, run.id, idx)
            if not any(e.role == "construction" for e in examples):
                continue
            ids = {e.predicted_item for e in examples} | {i for e in examples for i in e.history}
            got = reads.items_by_idx(session, run.id, ids)
            lookup = ItemLookup({i: it.title for i, it in got.items()},
                                {i: list(it.genres or []) for i, it in got.items()})  # fmt: skip

            def raw(role: str, exs: list[Any] = examples) -> list[tuple[list[int], int, int]]:
                return [(e.history, e.predicted_item, e.level) for e in exs if e.role == role]

            chosen.append(
                LatentCases.from_ids(
                    idx, lookup, raw("construction"), raw("verification"), raw("random")
                )
            )
            if len(chosen) == n_latents:
                break
    ctx = PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset))
    return chosen, ctx


def timed(
    latents: list[LatentCases],
    base_url: str,
    cache: LLMCache,
    concurrency: int,
    ctx: PromptContext,
    config: LLMConceptConfig,
) -> tuple[list[LLMConcept], float, LLMClient]:
    client = LLMClient(base_url, concurrency=concurrency, timeout_s=300, cache=cache)
    start = time.perf_counter()
    out = explain_latents(latents, client, ctx, config, progress=False)
    return out, time.perf_counter() - start, client


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=20)
    parser.add_argument("--n", type=int, default=5, help="N cases per role (paper: 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null", type=int, default=3, help="other explanations per null")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="cold runs to time"
    )
    parser.add_argument(
        "--text", action="store_true", help="plain-text answers (no JSON schema), as before"
    )
    args = parser.parse_args(argv)
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency needs one or more values >= 1")

    demo = demo_latents(args.latents)
    if demo is not None:
        latents, ctx, source = demo[0], demo[1], "demo DB"
    else:
        latents = synthetic_latents(args.latents, args.n, args.seed)
        ctx, source = PromptContext("movies", "movie", "movielens"), "synthetic (MovieLens titles)"
    config = LLMConceptConfig(n=args.n, json_schema=not args.text)
    rows: list[tuple[str, float, int, float, str]] = []  # measured: name, s, requests, req/s
    figures: dict[str, Any] = {"latents": len(latents), "n": args.n, "source": source}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalLLM(port=0, threads=args.threads, parallel=4) as llm,
    ):
        for conc in args.concurrency:
            cache = LLMCache(Path(tmp) / f"cold{conc}.sqlite")
            out, secs, client = timed(latents, llm.base_url, cache, conc, ctx, config)
            rps = client.requests_made / secs
            rows.append((f"cold, concurrency {conc}", secs, client.requests_made, rps, ""))
            figures[f"rps_c{conc}"] = round(rps, 3)
            figures[f"seconds_c{conc}"] = round(secs, 1)
        cache.reset_stats()
        again, secs, client = timed(latents, llm.base_url, cache, conc, ctx, config)
        hit_rate, lookups = cache.stats.hit_rate, cache.stats.hits + cache.stats.misses
        rerun_rps = client.requests_made / secs
        hits = "no lookups" if hit_rate is None else f"cache hits {hit_rate:.0%}"
        rows.append((f"warm rerun, concurrency {conc}", secs, client.requests_made, rerun_rps,
                     f"{hits}, {lookups / secs:.0f} cache answers/s"))  # fmt: skip
        figures["cache_hit_rate_rerun"] = None if hit_rate is None else round(hit_rate, 4)
        figures["rerun_requests"] = client.requests_made
        figures["rerun_rps"] = round(rerun_rps, 3)
        figures["rerun_cache_lookups_per_s"] = round(lookups / secs, 1)
        figures["rerun_seconds"] = round(secs, 3)
        figures["rerun_same_results"] = [c.confidence for c in again] == [c.confidence for c in out]
        client = LLMClient(llm.base_url, concurrency=4, timeout_s=300, cache=cache)
        start = time.perf_counter()
        llm_null(out, latents, client, ctx, config, size=args.null, seed=args.seed, progress=False)
        figures["null_seconds"] = round(time.perf_counter() - start, 1)
        figures["null_requests"] = client.requests_made
    cases = [c for con in out for c in con.details.get("cases", [])]
    figures["level_answers"] = len(cases)
    figures["unparseable_level_share"] = _share(sum(c["unparseable"] for c in cases), len(cases))
    figures["degenerate_share"] = _share(sum(c.status == "degenerate" for c in out), len(out))
    figures["rejected_labels"] = sum(len(c.details.get("rejected", [])) for c in out)
    figures["verified"] = sum(is_confident(c.confidence) for c in out)
    figures["verified_over_null"] = sum(
        is_verified(c.confidence, details_null_p(c.details)) for c in out
    )
    p95s = [p for c in out if (p := details_null_p95(c.details)) is not None]
    figures["null_p95_median"] = round(sorted(p95s)[len(p95s) // 2], 4) if p95s else None
    figures["json_schema"] = config.json_schema
    figures["status"] = {s: sum(c.status == s for c in out) for s in {c.status for c in out}}
    scored = [c.confidence for c in out if c.confidence is not None]
    figures["mean_confidence"] = round(sum(scored) / len(scored), 4) if scored else None

    print(f"LLM concepts: {len(latents)} latents ({source}), N = {args.n}, SmolLM2-135M local")
    print(f"{'run':<28}{'seconds':>10}{'requests':>10}{'req/s':>8}  note")
    for name, secs, reqs, rps, note in rows:
        print(f"{name:<28}{secs:>10.1f}{reqs:>10d}{rps:>8.2f}  {note}")

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:.1%}"

    share, status = figures["unparseable_level_share"], figures["status"]
    print(f"unparseable level answers: {pct(share)} of {len(cases)}; statuses {status}; "
          f"mean confidence {figures['mean_confidence']}")  # fmt: skip
    print(f"degenerate labels: {pct(figures['degenerate_share'])} ({figures['rejected_labels']} "
          f"rejected once); confidence >= 0.8: {figures['verified']}, also rejecting the null "
          f"(p <= 0.05): {figures['verified_over_null']} (null of {args.null}, median p95 "
          f"{figures['null_p95_median']}, {figures['null_requests']} requests)")  # fmt: skip
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
