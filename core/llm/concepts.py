"""LLM concepts (paper §3.3, docs/method.md §1.8): explain a latent from its construction cases,
then verify the explanation by predicting activation levels on its verification and random cases.

Input is plain data (``LatentCases`` of ``CaseText``) so any stage can feed it: the pipeline from
its recorded examples (``LatentCases.from_ids`` with an ``ItemLookup``), the backend from the
database rows. The LLM is whatever ``LLMClient`` points at.

Confidence is the paper's equation 4 over the *parseable* answers only:
``(#{pos: level > thres} + #{neg: level <= thres}) / (|pos| + |neg|)``. An answer that is not an
integer 0..10 is asked again with a nudge (up to ``max_retries`` times), then recorded as
unparseable and excluded from both numerator and denominator -- never counted as correct (the
reference code crashed on them or counted out-of-range answers as correct negatives). With fewer
than ``core.reports.min_parsed_per_side(N)`` parsed answers on either side there is no
confidence (status ``too_few_parsed``, docs/method.md §1.8), so no score rests on one side.

A degenerate label (``core.llm.labels``) is asked for once more, then stored with status
``degenerate`` and no confidence. Where the server accepts a JSON-schema ``response_format``
both asks use one (``LLMConceptConfig.json_schema``); the client falls back to plain text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm.auto import tqdm

from core.jsonsafe import jsonable
from core.llm.cases import ItemLookup, LatentCases, RawCase
from core.llm.client import LLMClient
from core.llm.labels import (
    degenerate_reason,
    degenerate_summary,
    explanation_schema,
    json_field,
)
from core.llm.progress import EXPLAIN, RELABEL, VERIFY, Progress, ignore
from core.llm.prompts import (
    EXPLANATION_MAX_CHARS,
    EXPLANATION_NUDGE,
    PROMPT_VERSION,
    CaseText,
    PromptContext,
    explanation_messages,
    fewshot_for,
    load_oneshot,
    parse_explanation,
    relabel_nudge,
)
from core.llm.verify import (
    STATUS_TOO_FEW_PARSED,
    STATUS_VERIFIED,
    Asked,
    Role,
    ask,
    ask_levels,
    equation4,
    score_levels,
    split_sides,
)
from core.reports import min_parsed_per_side

__all__ = [
    "STATUS_VERIFIED",
    "CaseText",
    "ItemLookup",
    "LLMConcept",
    "LLMConceptConfig",
    "LatentCases",
    "PromptContext",
    "RawCase",
    "aexplain_and_verify",
    "equation4",
    "explain_and_verify",
    "explain_latents",
    "verification_roles",
]

# A concept's status: "verified" = eq. 4 gave a confidence (whether it counts as verified is
# core.reports.is_verified: >= 0.8 and above its null); the others have no confidence.
STATUS_TOO_RARE, STATUS_UNPARSEABLE, STATUS_DEGENERATE = "too_rare", "unparseable", "degenerate"
STATUSES = (
    STATUS_VERIFIED, STATUS_TOO_RARE, STATUS_UNPARSEABLE, STATUS_TOO_FEW_PARSED, STATUS_DEGENERATE
)  # fmt: skip


@dataclass(frozen=True)
class LLMConceptConfig:
    n: int = 5  # N of the paper: cases of each role used (construction, verification, random)
    threshold: int = 5  # eq. 4's thres: a predicted level > threshold is a positive
    max_retries: int = 2  # extra asks (with a nudge) after an unparseable answer
    explanation_max_tokens: int = 48
    level_max_tokens: int = 4
    # Ask for a JSON-schema answer where the server accepts one (docs/method.md §1.8).
    json_schema: bool = True

    @property
    def level_tokens(self) -> int:
        """Tokens a level answer may take: a JSON object needs a few more than a bare number."""
        return self.level_max_tokens + (12 if self.json_schema else 0)


@dataclass
class LLMConcept:
    latent_id: int
    text: str  # "" when no explanation could be parsed
    confidence: float | None  # eq. 4 over parseable answers; None unless status == "verified"
    # status: one of STATUSES; details: answers, reasons, rejected labels, the null (§1.11)
    status: str  # verified / too_rare / unparseable
    model: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """A ``concepts`` row (without ``run_id``) for ``publish_run`` / ``add_concept``."""
        return {
            "latent_idx": self.latent_id,
            "method": "llm",
            "text": self.text,
            "terms": [],
            "confidence": self.confidence,
            "status": self.status,
            "model": self.model,
            "details": self.details,
        }

    def to_json(self) -> dict[str, Any]:
        """This concept as JSON (``llm_concepts.json`` in the run directory)."""
        return jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LLMConcept:
        """The inverse of :meth:`to_json`."""
        return cls(**data)


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip(" .\"'").split())


async def _explain(
    latent: LatentCases,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    progress: Progress = ignore,
) -> tuple[Asked, list[dict[str, str]]]:
    """Ask for an explanation; a degenerate one (docs/method.md §1.8: repeats itself, fits any
    latent, copies a shown title) is rejected with its reason and asked for once more, in the
    same conversation. Returns the last ask and the rejected labels."""
    copied = _normalise(load_oneshot(ctx.oneshot).explanation)

    def parse_own_explanation(raw: str) -> str | None:
        # Small models often return the one-shot example's explanation verbatim: that says
        # nothing about this latent, so it counts as no answer (asked again, then unparseable).
        field_value = json_field(raw, "explanation")
        text = parse_explanation(field_value if isinstance(field_value, str) else raw)
        return None if text is not None and _normalise(text) == copied else text

    cases = latent.construction[: config.n]
    messages = explanation_messages(
        latent.latent_id, cases, ctx, config.json_schema, latent.vocabulary
    )
    shots = [c for example in fewshot_for(latent.latent_id, ctx) for c in example.cases]
    shown = [
        label for c in [*cases, *shots] for label in (*c.history[-ctx.history_len :], c.predicted)
    ]
    task_words = (ctx.item_category, ctx.item_name)
    schema = explanation_schema(EXPLANATION_MAX_CHARS) if config.json_schema else None
    tokens = config.explanation_max_tokens + (16 if schema else 0)  # JSON's own tokens
    rejected: list[dict[str, str]] = []
    progress(EXPLAIN, 0, len(cases))
    asked = await ask(
        client, messages, parse_own_explanation, EXPLANATION_NUDGE, tokens, config.max_retries,
        schema,
    )  # fmt: skip
    for attempt in range(2):
        reason = None if asked.value is None else degenerate_reason(asked.value, shown, task_words)
        if reason is None:
            return asked, rejected
        rejected.append({"text": asked.value, "reason": reason})
        if attempt == 1:
            break
        progress(RELABEL, 1, 2)
        again = await ask(
            client,
            [*messages, {"role": "assistant", "content": asked.last},
             {"role": "user", "content": relabel_nudge(reason, ctx)}],
            parse_own_explanation, EXPLANATION_NUDGE, tokens, config.max_retries, schema,
        )  # fmt: skip
        again.answers = asked.answers + again.answers
        again.cached += asked.cached
        again.requests += asked.requests
        asked = again
    return asked, rejected


async def aexplain_and_verify(
    latent: LatentCases,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig = LLMConceptConfig(),  # noqa: B008 - frozen, so safe as a default
    progress: Progress = ignore,
) -> LLMConcept:
    """Explain ``latent`` from its construction cases, then verify (unless too rare); each step
    is reported to ``progress`` (``core.llm.progress``)."""
    n = config.n
    explained, rejected = await _explain(latent, client, ctx, config, progress)
    details: dict[str, Any] = {
        "prompt_version": PROMPT_VERSION,
        "oneshot": ctx.oneshot,
        "threshold": config.threshold,
        "n": n,
        "min_parsed_per_side": min_parsed_per_side(n),
        "explanation_answers": explained.answers,
        "requests": explained.requests,
        "cached": explained.cached,
    }
    if rejected:
        details["rejected"] = rejected
    model = explained.model
    if explained.value is None:
        details["reason"] = (
            f"no parseable explanation of its own after {explained.requests} answer(s) "
            "(empty, malformed, or a copy of the one-shot example's)"
        )
        return LLMConcept(latent.latent_id, "", None, STATUS_UNPARSEABLE, model, details)
    text: str = explained.value
    if len(rejected) == 2 and rejected[-1]["text"] == text:
        details["reason"] = degenerate_summary(rejected[0]["reason"], rejected[1]["reason"])
        return LLMConcept(latent.latent_id, text, None, STATUS_DEGENERATE, model, details)
    too_rare = latent.too_rare if latent.too_rare is not None else len(latent.verification) < n
    if too_rare or not latent.verification:
        details["reason"] = (
            f"{len(latent.verification)} active verification case(s), fewer than N: "
            "too rare to verify (never verified on construction cases)"
        )
        return LLMConcept(latent.latent_id, text, None, STATUS_TOO_RARE, model, details)

    confidence, status = await _verify(latent, text, client, ctx, config, details, progress)
    return LLMConcept(latent.latent_id, text, confidence, status, model, details)


def verification_roles(latent: LatentCases, n: int) -> list[Role]:
    """The cases eq. 4 judges: N verification (positive) and N random (negative) cases."""
    roles = [("verification", c) for c in latent.verification[:n]]
    return roles + [("random", c) for c in latent.random[:n]]


async def _verify(
    latent: LatentCases,
    text: str,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    details: dict[str, Any],
    progress: Progress = ignore,
) -> tuple[float | None, str]:
    """(confidence, status) of explanation ``text``: the LLM predicts the activation level of
    each verification (positive) and random (negative) case; eq. 4 over the parsed answers,
    given enough on each side (docs/method.md §1.8). Records every answer in ``details``."""
    roles = verification_roles(latent, config.n)
    answered = [0]

    def one_more() -> None:
        answered[0] += 1
        progress(VERIFY, answered[0], len(roles))

    progress(VERIFY, 0, len(roles))
    asked = await ask_levels(
        client, latent.latent_id, text, roles, ctx, max_tokens=config.level_tokens,
        max_retries=config.max_retries, structured=config.json_schema, on_answer=one_more,
    )  # fmt: skip
    details["cases"] = [
        {
            "role": role,
            "predicted_item": case.predicted,
            "true_level": case.level,
            "predicted_level": a.value,
            "unparseable": a.value is None,
            "answers": a.answers,
        }
        for (role, case), a in zip(roles, asked, strict=True)
    ]
    details["requests"] += sum(a.requests for a in asked)
    details["cached"] += sum(a.cached for a in asked)
    n_parseable = sum(a.value is not None for a in asked)
    details["n_parseable"] = n_parseable
    details["n_unparseable"] = len(asked) - n_parseable
    pos, neg = split_sides(roles, asked)
    confidence, status, reason = score_levels(pos, neg, config.n, config.threshold)
    if reason is not None:
        details["reason"] = reason
    return confidence, status


def explain_and_verify(
    latent: LatentCases,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig = LLMConceptConfig(),  # noqa: B008
) -> LLMConcept:
    """Synchronous ``aexplain_and_verify`` (the worker's entry for one latent)."""
    return client.run_sync(lambda: aexplain_and_verify(latent, client, ctx, config))


async def aexplain_latents(
    latents: Sequence[LatentCases],
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig = LLMConceptConfig(),  # noqa: B008
    *,
    progress: bool = True,
) -> list[LLMConcept]:
    """All of ``latents``, ``client.concurrency`` latents in flight, results in input order."""
    in_flight = asyncio.Semaphore(client.concurrency)
    bar = tqdm(total=len(latents), desc="LLM concepts", unit="latent", disable=not progress)

    async def one(latent: LatentCases) -> LLMConcept:
        async with in_flight:
            concept = await aexplain_and_verify(latent, client, ctx, config)
        bar.update(1)
        if client.cache is not None and client.cache.stats.hit_rate is not None:
            bar.set_postfix(cache_hits=f"{client.cache.stats.hit_rate:.0%}", refresh=False)
        return concept

    try:
        return list(await asyncio.gather(*(one(lat) for lat in latents)))
    finally:
        bar.close()


def select_latents(
    latents: Sequence[LatentCases],
    limit: int | None = None,
    latent_ids: Collection[int] | None = None,
) -> list[LatentCases]:
    """``latent_ids`` (all of them must exist), then the first ``limit``."""
    chosen = list(latents)
    if latent_ids is not None:
        wanted = set(latent_ids)
        missing = wanted - {lat.latent_id for lat in chosen}
        if missing:
            raise KeyError(f"no examples for latent(s) {sorted(missing)[:20]}")
        chosen = [lat for lat in chosen if lat.latent_id in wanted]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen


def explain_latents(
    latents: Sequence[LatentCases],
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig = LLMConceptConfig(),  # noqa: B008
    *,
    limit: int | None = None,
    latent_ids: Collection[int] | None = None,
    progress: bool = True,
) -> list[LLMConcept]:
    """The batch entry point: a tqdm bar with ETA; answers are cached as they arrive, so a
    stopped run resumes from where it stopped. LLM errors propagate (loudly) and stop the run."""
    chosen = select_latents(latents, limit, latent_ids)

    async def run() -> list[LLMConcept]:
        return await aexplain_latents(chosen, client, ctx, config, progress=progress)

    return client.run_sync(run)
