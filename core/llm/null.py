"""The permutation null of every LLM confidence (docs/method.md §1.11).

For latent l with explanation c_l and verification cases V_l, the null is eq. 4 of *other*
latents' explanations c_m on V_l -- the same prompts, the same levels, the same minimum of parsed
answers per side -- for a seeded sample of ``size`` of the run's other explained latents (texts
equal to c_l's left out). Each null concept costs 2N requests, so ``size`` bounds the cost; the
request cache makes a rerun free. Stored in ``concept.details["null"]`` (the rank p-value p =
(r + 1) / (n + 1), r, p95, mean, median, n, the null concepts and their confidences, the lift
``conf - median``). A 5% test needs n >= 19 null draws (``core.reports.NULL_MIN_N``): a smaller
null is "no null", never verified, so ``size`` must be at least 19 for a concept to be verified.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from core.llm.client import LLMClient
from core.llm.prompts import PromptContext
from core.llm.verify import Role, ask_levels, score_levels, split_sides
from core.reports import null_stats

if TYPE_CHECKING:
    from core.llm.concepts import LatentCases, LLMConcept, LLMConceptConfig


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def null_sample(
    concept: LLMConcept, pool: Sequence[LLMConcept], size: int, seed: int
) -> list[LLMConcept]:
    """The other explained latents whose texts make ``concept``'s null (seeded, at most size)."""
    seen = {_key(concept.text)}
    others = []
    for other in sorted(pool, key=lambda c: c.latent_id):
        if other.latent_id != concept.latent_id and other.text and _key(other.text) not in seen:
            seen.add(_key(other.text))
            others.append(other)
    rng = random.Random(seed * 1_000_003 + concept.latent_id)
    return (
        others
        if len(others) <= size
        else sorted(rng.sample(others, size), key=lambda c: c.latent_id)
    )


async def score_null_concept(
    client: LLMClient,
    latent_id: int,
    other: LLMConcept,
    roles: Sequence[Role],
    ctx: PromptContext,
    config: LLMConceptConfig,
) -> tuple[dict[str, Any], int, int]:
    """Eq. 4 of ``other``'s explanation on ``roles`` (latent ``latent_id``'s cases), with the
    same minimum of parsed answers per side: (null entry, requests, cached answers)."""
    asked = await ask_levels(
        client, latent_id, other.text, roles, ctx,
        max_tokens=config.level_tokens, max_retries=config.max_retries,
        structured=config.json_schema,
    )  # fmt: skip
    pos, neg = split_sides(roles, asked)
    confidence, _, _ = score_levels(pos, neg, config.n, config.threshold)
    entry = {"latent": other.latent_id, "text": other.text, "confidence": confidence}
    return entry, sum(a.requests for a in asked), sum(a.cached for a in asked)


def null_record(
    entries: list[dict[str, Any]], confidence: float | None, size: int, seed: int | None
) -> dict[str, Any]:
    """``details["null"]`` from the null concepts' entries (see the module doc)."""
    values = [e["confidence"] for e in entries if e["confidence"] is not None]
    own = float(confidence) if confidence is not None else None
    null = null_stats(values, seed, own=own)
    median = null["median"]
    return null | {
        "size": size,
        "concepts": entries,
        "lift": None if median is None else float(confidence or 0.0) - median,
    }


async def anull(
    concepts: Sequence[LLMConcept],
    latents: Sequence[LatentCases],
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    *,
    size: int,
    seed: int,
    progress: bool = True,
) -> None:
    """Set ``details["null"]`` of every concept with a confidence (see the module doc)."""
    from core.llm.concepts import STATUS_DEGENERATE, verification_roles

    cases = {lat.latent_id: lat for lat in latents}
    pool = [c for c in concepts if c.text and c.status != STATUS_DEGENERATE]
    scored = [c for c in concepts if c.confidence is not None and c.latent_id in cases]
    bar = tqdm(total=len(scored), desc="LLM null", unit="latent", disable=not progress)
    in_flight = asyncio.Semaphore(client.concurrency)

    async def one(concept: LLMConcept) -> None:
        roles = verification_roles(cases[concept.latent_id], config.n)
        entries: list[dict[str, Any]] = []
        async with in_flight:
            for other in null_sample(concept, pool, size, seed):
                entry, requests, cached = await score_null_concept(
                    client, concept.latent_id, other, roles, ctx, config
                )
                entries.append(entry)
                concept.details["requests"] += requests
                concept.details["cached"] += cached
        concept.details["null"] = null_record(entries, concept.confidence, size, seed)
        bar.update(1)

    try:
        await asyncio.gather(*(one(c) for c in scored))
    finally:
        bar.close()


def llm_null(
    concepts: Sequence[LLMConcept],
    latents: Sequence[LatentCases],
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    *,
    size: int,
    seed: int,
    progress: bool = True,
) -> None:
    """Synchronous :func:`anull` (the worker's and the benchmark's entry)."""

    async def run() -> None:
        await anull(concepts, latents, client, ctx, config, size=size, seed=seed, progress=progress)

    client.run_sync(run)
