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
``jobs`` (``jobs.completed``, ``jobs.lost``, ...): ``--jobs`` explanation jobs whose
``recsae worker`` is SIGKILLed mid-job ``--kills`` times (benchmarks/jobs.py, docs/jobs.md).

    .venv/bin/python benchmarks/llm.py [--latents 20] [--n 5] [--threads 2] [--null 3]
                                       [--jobs 3] [--kills 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
from collections import Counter
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
from core.llm.prompts import (
    FewShot,
    PromptContext,
    choose_fewshot,
    fewshot_answer,
    label_vocabulary,
    oneshot_kind,
)
from core.llm.server import BUNDLED, DEFAULT_MODEL, LocalLLM
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


def demo_latents(
    n_latents: int, seed: int = 0, n: int = 5, pool: int = 0
) -> tuple[list[LatentCases], PromptContext, list[LatentCases]] | None:
    """A seeded choice of ``n_latents`` verifiable latents (construction cases and at least
    ``n`` verification cases) of the newest run in the demo DB, if there is one; the prompts'
    few-shot examples (latents whose TF-IDF concept is verified, docs/method.md §1.8); and
    ``pool`` more latents of the same seeded order, explained only, whose labels join the null."""
    db = get_settings().data_dir / "recsae.db"
    if not db.is_file():
        return None
    from sqlalchemy import select

    from core.store import reads
    from core.store.engine import session_factory
    from core.store.schema import Concept

    with session_factory(f"sqlite:///{db}")() as session:
        runs = reads.list_runs(session)
        if not runs:
            return None
        run = runs[0]
        ctx = PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset))
        # the columns read by name: a demo DB from before a schema change still serves
        tfidf = session.execute(
            select(Concept.latent_idx, Concept.text, Concept.confidence, Concept.details).where(
                Concept.run_id == run.id, Concept.method == "tfidf"
            )
        )
        verified_tfidf = {
            idx: text
            for idx, text, conf, details in tfidf
            if text and is_verified(conf, details_null_p(details))
        }
        order = list(range(run.n_latents))
        random.Random(seed).shuffle(order)
        chosen: list[LatentCases] = []
        shots: list[FewShot] = []
        for idx in order:
            if len(chosen) == n_latents + pool and idx not in verified_tfidf:
                continue
            examples = reads.latent_examples(session, run.id, idx)
            roles = [e.role for e in examples]
            if "construction" not in roles or roles.count("verification") < n:
                continue
            ids = {e.predicted_item for e in examples} | {i for e in examples for i in e.history}
            got = reads.items_by_idx(session, run.id, ids)
            lookup = ItemLookup(
                {i: it.title for i, it in got.items()},
                {i: list(it.genres or []) for i, it in got.items()},
                {i: " | ".join([", ".join(it.genres or []), ", ".join(it.tags or [])])
                 for i, it in got.items()},
            )  # fmt: skip

            def raw(role: str, exs: list[Any] = examples) -> list[tuple[list[int], int, int]]:
                return [(e.history, e.predicted_item, e.level) for e in exs if e.role == role]

            latent = LatentCases.from_ids(
                idx, lookup, raw("construction"), raw("verification"), raw("random")
            )
            if idx in verified_tfidf:
                shown = tuple(latent.construction[:n])
                vocabulary = latent.vocabulary or label_vocabulary(shown, ctx.history_len)
                answer = fewshot_answer(verified_tfidf[idx], ctx)
                shots.append(FewShot(idx, shown, vocabulary, answer))
            if len(chosen) < n_latents + pool:
                chosen.append(latent)
    ctx = dataclasses.replace(ctx, examples=choose_fewshot(shots, seed))
    extra = [dataclasses.replace(lat, verification=[], too_rare=True) for lat in chosen[n_latents:]]
    return chosen[:n_latents], ctx, extra


def timed(
    latents: list[LatentCases],
    base_url: str,
    cache: LLMCache,
    concurrency: int,
    ctx: PromptContext,
    config: LLMConceptConfig,
    progress: bool = False,
) -> tuple[list[LLMConcept], float, LLMClient]:
    client = LLMClient(base_url, concurrency=concurrency, timeout_s=300, cache=cache)
    start = time.perf_counter()
    out = explain_latents(latents, client, ctx, config, progress=progress)
    return out, time.perf_counter() - start, client


def _labels(concepts: list[LLMConcept]) -> int:
    """Distinct labels that may enter a null (core.llm.null: no degenerate one, no repeat)."""
    return len({" ".join(c.text.lower().split()) for c in concepts
                if c.text and c.status != "degenerate"})  # fmt: skip


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def measure(
    model: str,
    latents: list[LatentCases],
    extra: list[LatentCases],
    ctx: PromptContext,
    config: LLMConceptConfig,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[tuple[str, float, int, float, str]], list[LLMConcept]]:
    """One model's figures: cold runs, a warm rerun, the null (over the measured latents' and the
    ``extra`` latents' labels), and the shares the model comparison reads (docs/llm.md)."""
    rows: list[tuple[str, float, int, float, str]] = []  # measured: name, s, requests, req/s
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalLLM(port=0, threads=args.threads, parallel=4, model_path=model) as llm,
    ):
        figures["model_file"] = Path(llm.model_path).name
        for conc in args.concurrency:
            cache = LLMCache(Path(tmp) / f"cold{conc}.sqlite")
            out, secs, client = timed(
                latents, llm.base_url, cache, conc, ctx, config, args.progress
            )
            rps = client.requests_made / secs
            rows.append((f"cold, concurrency {conc}", secs, client.requests_made, rps, ""))
            figures[f"rps_c{conc}"] = round(rps, 3)
            figures[f"seconds_c{conc}"] = round(secs, 1)
        figures["seconds_per_label"] = round(secs / len(latents), 2) if latents else None
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
        # --pool: more labels for the null, explained only while it is short of --null draws
        # and some concept could use them (a confidence >= 0.8, or every one without the flag)
        pool: list[LLMConcept] = []
        wanted = not args.null_confident_only or any(is_confident(c.confidence) for c in out)
        while wanted and len(pool) < len(extra) and _labels([*out, *pool]) <= args.null:
            more = extra[len(pool) : len(pool) + 4]
            pool += explain_latents(more, client, ctx, config, progress=args.progress)
        figures["null_pool_explained"] = len(pool)
        # --null-confident-only: a concept below 0.8 is never verified, whatever its null says
        # (core.reports.is_verified), so verified_over_null is the same for a fraction of the cost
        nulled = [
            lat for lat, c in zip(latents, out, strict=True)
            if not args.null_confident_only or is_confident(c.confidence)
        ]  # fmt: skip
        llm_null([*out, *pool], nulled, client, ctx, config, size=args.null, seed=args.seed,
                 progress=args.progress)  # fmt: skip
        figures["null_seconds"] = round(time.perf_counter() - start, 1)
        figures["null_requests"] = client.requests_made
    cases = [c for con in out for c in con.details.get("cases", [])]
    figures["level_answers"] = len(cases)
    figures["unparseable_level_share"] = _share(sum(c["unparseable"] for c in cases), len(cases))
    # what the model answered per side (eq. 4 counts a verification case right above the
    # threshold and a random one at or below it): one level for everything scores 0.5
    figures["predicted_levels"] = {
        role: dict(sorted(Counter(
            "unparseable" if c["predicted_level"] is None else str(c["predicted_level"])
            for c in cases if c["role"] == role
        ).items()))
        for role in ("verification", "random")
    }  # fmt: skip
    figures["parseable_share"] = _share(sum(c.status != "unparseable" for c in out), len(out))
    figures["degenerate_share"] = _share(sum(c.status == "degenerate" for c in out), len(out))
    figures["rejected_labels"] = sum(len(c.details.get("rejected", [])) for c in out)
    figures["verified"] = sum(is_confident(c.confidence) for c in out)
    figures["verified_over_null"] = (
        None if args.labels_only
        else sum(is_verified(c.confidence, details_null_p(c.details)) for c in out)
    )  # fmt: skip
    p95s = [p for c in out if (p := details_null_p95(c.details)) is not None]
    figures["null_p95_median"] = round(sorted(p95s)[len(p95s) // 2], 4) if p95s else None
    figures["null_n_min"] = min(
        (c.details["null"]["n"] for c in out if "null" in c.details), default=None
    )
    figures["json_schema"] = config.json_schema
    figures["status"] = {s: sum(c.status == s for c in out) for s in {c.status for c in out}}
    scored = [c.confidence for c in out if c.confidence is not None]
    figures["mean_confidence"] = round(sum(scored) / len(scored), 4) if scored else None
    figures["labels"] = {c.latent_id: c.text for c in out}
    # a label that repeats a few-shot example's answer word for word ("comedy movies")
    shown = {" ".join(e.explanation.lower().split()) for e in ctx.examples}
    copies = sum(" ".join(c.text.lower().split()) in shown for c in out if c.text)
    figures["fewshot_copy_share"] = _share(copies, len(out)) if shown else None
    figures["distinct_labels"] = _labels(out)
    return figures, rows, out


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
    parser.add_argument(
        "--models", nargs="+", default=[DEFAULT_MODEL],
        help=f"bundled models ({', '.join(BUNDLED)}) or .gguf files, measured one at a time",
    )  # fmt: skip
    parser.add_argument(
        "--null-confident-only", action="store_true",
        help="the null only for confidences >= 0.8 (the only ones it can verify)",
    )  # fmt: skip
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    parser.add_argument(
        "--no-fewshot", action="store_true", help="prompts without the few-shot examples"
    )
    parser.add_argument(
        "--labels-only", action="store_true",
        help="explain only (parseable, degenerate, seconds per label): no verification, no null",
    )  # fmt: skip
    parser.add_argument(
        "--history", type=int, default=PromptContext.history_len,
        help="history items shown per case (fewer: shorter prompts on a busy machine)",
    )  # fmt: skip
    parser.add_argument(
        "--pool", type=int, default=0,
        help="more demo latents explained only, whose labels join the null (it needs >= 19)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=3,
        help="explanation jobs queued for the durability figures (0: not measured)",
    )  # fmt: skip
    parser.add_argument("--kills", type=int, default=2, help="workers SIGKILLed mid-job")
    args = parser.parse_args(argv)
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency needs one or more values >= 1")
    if args.jobs < 0 or args.kills < 0:
        parser.error("--jobs and --kills must be 0 or more")

    demo = demo_latents(args.latents, args.seed, args.n, args.pool)
    extra: list[LatentCases] = []
    if demo is not None:
        latents, ctx, extra, source = demo[0], demo[1], demo[2], "demo DB"
    else:
        latents = synthetic_latents(args.latents, args.n, args.seed)
        ctx, source = PromptContext("movies", "movie", "movielens"), "synthetic (MovieLens titles)"
    config = LLMConceptConfig(n=args.n, json_schema=not args.text)
    ctx = dataclasses.replace(ctx, history_len=args.history)
    if args.no_fewshot:
        ctx = dataclasses.replace(ctx, examples=())
    if args.labels_only:  # no verification case: each latent is explained, never verified
        latents = [dataclasses.replace(lat, verification=[], too_rare=True) for lat in latents]
    figures: dict[str, Any] = {"latents": len(latents), "n": args.n, "source": source}
    figures["history_len"] = args.history
    figures["fewshot_latents"] = [e.latent_id for e in ctx.examples]
    figures["null_pool_extra"] = len(extra)
    figures["models"] = {}
    rows: list[tuple[str, float, int, float, str]] = []
    for model in args.models:
        name = model if model in BUNDLED else Path(model).stem
        per, rows_m, out_m = measure(model, latents, extra, ctx, config, args)
        figures["models"][name] = per
        if model == args.models[0]:  # the top-level keys: the first model's, as before
            rows, out = rows_m, out_m
            figures.update({k: v for k, v in per.items() if k != "title"})
    figures["jobs"] = None  # not measured (--jobs 0), never a stand-in 0
    if args.jobs:
        if str(REPO_ROOT) not in sys.path:  # run as a script: benchmarks/ is not a package then
            sys.path.insert(0, str(REPO_ROOT))
        from benchmarks.jobs import measure as measure_jobs

        figures["jobs"] = measure_jobs(args.jobs, args.kills)
    cases = [c for con in out for c in con.details.get("cases", [])]
    model_names = ", ".join(figures["models"])
    print(f"LLM concepts: {len(latents)} latents ({source}), N = {args.n}, {args.models[0]}")
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
    print(f"{'model':<16}{'parseable':>10}{'degenerate':>11}{'verified/null':>14}{'s/label':>9}")
    for name, per in figures["models"].items():
        print(f"{name:<16}{pct(per['parseable_share']):>10}{pct(per['degenerate_share']):>11}"
              f"{str(per['verified_over_null']):>14}{per['seconds_per_label']:>9.1f}")  # fmt: skip
    print(f"models compared: {model_names}")
    if figures["jobs"] is not None:
        jobs = figures["jobs"]
        print(f"jobs: {jobs['completed']} of {jobs['queued']} done, {jobs['lost']} lost, "
              f"{jobs['kills']} workers killed mid-job, {jobs['attempts']} claims")  # fmt: skip
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
