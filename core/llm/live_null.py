"""The null of a live re-explanation (the explorer's "Explain with the LLM", docs/method.md §1.11).

The null of latent l does not depend on l's own label: it is other latents' labels c_m scored
on l's verification cases V_l. So a new label of l is compared, in this order, with

1. **a stored null** (:func:`reusable_null`): the null an earlier explanation of l carries, when
   it was computed on the same cases (same run version, the same N verification and random
   cases), by the same model (the name the endpoint reported), prompt version, N and threshold.
   Null concepts whose text equals the new label are dropped (as for any null);
2. **a live null** (:func:`alive_null`): a seeded sample of ``size`` other latents' current LLM
   labels (distinct, non-degenerate: :func:`core.llm.null.null_sample`), each verified on V_l
   with the same prompts, levels and minimum of parsed answers per side, all at once through
   the same client (its concurrency bounds the requests in flight).

Either is stored in ``details["null"]`` with ``"method"``: ``"reused"`` (and ``from_concept``)
or ``"live"``. The caller bounds the live null by its deadline; a null that does not finish is
no null, and a concept without one is not verified (``core.reports.is_verified``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.llm.client import LLMClient
from core.llm.concepts import LatentCases, LLMConcept, LLMConceptConfig, verification_roles
from core.llm.null import null_record, null_sample, score_null_concept
from core.llm.progress import NULL, Progress, ignore
from core.llm.prompts import PROMPT_VERSION, PromptContext

REUSED, LIVE = "reused", "live"


@dataclass(frozen=True)
class Earlier:
    """An earlier LLM explanation of the same latent, as stored (id, model, details)."""

    id: int
    model: str | None
    details: dict[str, Any]


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _cases(details: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    return [(c.get("role"), c.get("predicted_item"), c.get("true_level"))
            for c in details.get("cases") or []]  # fmt: skip


def reusable_null(concept: LLMConcept, earlier: Sequence[Earlier]) -> dict[str, Any] | None:
    """The newest stored null of ``earlier`` (newest first) valid for ``concept`` (see the
    module doc), without null concepts equal to its label; None when there is none."""
    own = concept.details
    for prior in earlier:
        null = prior.details.get("null")
        if not isinstance(null, dict) or not isinstance(null.get("concepts"), list):
            continue
        same_setup = (
            prior.model == concept.model
            and prior.details.get("prompt_version") == own.get("prompt_version") == PROMPT_VERSION
            and prior.details.get("n") == own.get("n")
            and prior.details.get("threshold") == own.get("threshold")
            and _cases(prior.details) == _cases(own)
        )
        if not same_setup:
            continue
        own_text = _key(concept.text)
        entries = [e for e in null["concepts"] if _key(str(e.get("text", ""))) != own_text]
        size = int(null.get("size") or len(entries))
        record = null_record(entries, concept.confidence, size, null.get("seed"))
        if record["n"]:
            return record | {"method": REUSED, "from_concept": prior.id}
    return None


async def alive_null(
    concept: LLMConcept,
    latent: LatentCases,
    pool: Sequence[LLMConcept],
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    *,
    size: int,
    seed: int,
    progress: Progress = ignore,
) -> dict[str, Any] | None:
    """The live null of ``concept`` (see the module doc): None when no other latent has a
    label to score. Counts its requests into ``concept.details``."""
    others = null_sample(concept, pool, size, seed)
    if not others:
        return None
    roles = verification_roles(latent, config.n)
    done = 0
    progress(NULL, 0, len(others))

    async def one(other: LLMConcept) -> dict[str, Any]:
        nonlocal done
        entry, requests, cached = await score_null_concept(
            client, concept.latent_id, other, roles, ctx, config
        )
        concept.details["requests"] = concept.details.get("requests", 0) + requests
        concept.details["cached"] = concept.details.get("cached", 0) + cached
        done += 1
        progress(NULL, done, len(others))
        return entry

    entries = list(await asyncio.gather(*(one(other) for other in others)))
    return null_record(entries, concept.confidence, size, seed) | {"method": LIVE}
