"""LLM concepts (paper §3.3, docs/method.md §1.8): explain a latent from its construction cases,
then verify the explanation by predicting activation levels on its verification and random cases.

Input is plain data (``LatentCases`` of ``CaseText``) so any stage can feed it: the pipeline from
its recorded examples (``LatentCases.from_ids`` with an ``ItemLookup``), the backend from the
database rows. The LLM is whatever ``LLMClient`` points at.

Confidence is the paper's equation 4 over the *parseable* answers only:
``(#{pos: level > thres} + #{neg: level <= thres}) / (|pos| + |neg|)``. An answer that is not an
integer 0..10 is asked again with a nudge (up to ``max_retries`` times), then recorded as
unparseable and excluded from both numerator and denominator -- never counted as correct (the
reference code crashed on them or counted out-of-range answers as correct negatives).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from core.jsonsafe import jsonable
from core.llm.client import ChatAnswer, LLMClient, Message
from core.llm.prompts import (
    EXPLANATION_NUDGE,
    LEVEL_NUDGE,
    PROMPT_VERSION,
    CaseText,
    PromptContext,
    explanation_messages,
    load_oneshot,
    parse_explanation,
    parse_level,
    verification_messages,
)

__all__ = [
    "CaseText",
    "ItemLookup",
    "LLMConcept",
    "LLMConceptConfig",
    "LatentCases",
    "PromptContext",
    "aexplain_and_verify",
    "equation4",
    "explain_and_verify",
    "explain_latents",
]

T = TypeVar("T")
# A concept's status (not to confuse with core.reports.VERIFIED_CONFIDENCE, the 0.8 threshold).
STATUS_VERIFIED, STATUS_TOO_RARE, STATUS_UNPARSEABLE = "verified", "too_rare", "unparseable"
RawCase = tuple[Sequence[int], int, int]  # (history item ids, predicted item id, level 0-10)


class _DatasetLike(Protocol):
    item_title: list[str]
    item_genres: list[list[str]]


@dataclass(frozen=True)
class ItemLookup:
    """Item id -> the label the LLM sees: ``title (genre, genre)`` (paper Table 5's style).

    ``titles``/``genres`` may be lists indexed by item id or mappings holding only the items
    needed (the backend loads just those).
    """

    titles: Sequence[str] | Mapping[int, str]
    genres: Sequence[Sequence[str]] | Mapping[int, Sequence[str]] | None = None

    @classmethod
    def from_dataset(cls, dataset: _DatasetLike) -> ItemLookup:
        return cls(dataset.item_title, dataset.item_genres)

    def label(self, item: int) -> str:
        try:
            title = self.titles[item]
        except (IndexError, KeyError) as exc:
            raise KeyError(f"item {item} has no title in the item lookup") from exc
        genres = list(self.genres[item]) if self.genres is not None else []
        return f"{title} ({', '.join(genres)})" if genres else title


@dataclass
class LatentCases:
    """A latent's examples (docs/method.md §1.7), as text. ``verification`` are active test-side
    cases (positives), ``random`` are cases where the latent is not active (negatives)."""

    latent_id: int
    construction: list[CaseText]
    verification: list[CaseText]
    random: list[CaseText]
    # Fewer than N active verification cases (docs/method.md §1.7); None: decide from
    # len(verification).
    too_rare: bool | None = None

    @classmethod
    def from_ids(
        cls,
        latent_id: int,
        items: ItemLookup,
        construction: Iterable[RawCase],
        verification: Iterable[RawCase],
        random: Iterable[RawCase],
        too_rare: bool | None = None,
    ) -> LatentCases:
        """Build from ``(history item ids, predicted item id, level)`` triples."""

        def texts(raw: Iterable[RawCase]) -> list[CaseText]:
            return [
                CaseText(tuple(items.label(int(i)) for i in hist), items.label(int(pred)), int(lv))
                for hist, pred, lv in raw
            ]

        return cls(latent_id, texts(construction), texts(verification), texts(random), too_rare)


@dataclass(frozen=True)
class LLMConceptConfig:
    n: int = 5  # N of the paper: cases of each role used (construction, verification, random)
    threshold: int = 5  # eq. 4's thres: a predicted level > threshold is a positive
    max_retries: int = 2  # extra asks (with a nudge) after an unparseable answer
    min_parseable_fraction: float = 0.5  # below this share of parseable levels: "unparseable"
    explanation_max_tokens: int = 48
    level_max_tokens: int = 4


@dataclass
class LLMConcept:
    latent_id: int
    text: str  # "" when no explanation could be parsed
    confidence: float | None  # eq. 4 over parseable answers; None unless status == "verified"
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


def equation4(
    positive_levels: Sequence[int | None], negative_levels: Sequence[int | None], threshold: int
) -> float | None:
    """Paper eq. 4 over the parseable (non-None) predictions; None when there are none."""
    pos = [lv for lv in positive_levels if lv is not None]
    neg = [lv for lv in negative_levels if lv is not None]
    if not pos and not neg:
        return None
    correct = sum(lv > threshold for lv in pos) + sum(lv <= threshold for lv in neg)
    return correct / (len(pos) + len(neg))


@dataclass
class _Asked:
    value: Any
    answers: list[str]
    model: str
    cached: int
    requests: int


async def _ask(
    client: LLMClient,
    messages: list[Message],
    parse: Callable[[str], T | None],
    nudge: str,
    max_tokens: int,
    max_retries: int,
) -> _Asked:
    """Ask; while the answer does not parse, show it back with a nudge (same conversation)."""
    convo = list(messages)
    answers: list[str] = []
    cached = 0
    answer: ChatAnswer | None = None
    for _ in range(max_retries + 1):
        answer = await client.achat(convo, max_tokens=max_tokens)
        answers.append(answer.text[:300])
        cached += answer.cached
        value = parse(answer.text)
        if value is not None:
            return _Asked(value, answers, answer.model, cached, len(answers))
        convo = [
            *convo,
            {"role": "assistant", "content": answer.text},
            {"role": "user", "content": nudge},
        ]
    model = answer.model if answer is not None else client.model
    return _Asked(None, answers, model, cached, len(answers))


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip(" .\"'").split())


async def aexplain_and_verify(
    latent: LatentCases,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig = LLMConceptConfig(),  # noqa: B008 - frozen, so safe as a default
) -> LLMConcept:
    """Explain ``latent`` from its construction cases, then verify (unless too rare)."""
    n = config.n
    copied = _normalise(load_oneshot(ctx.oneshot).explanation)

    def parse_own_explanation(raw: str) -> str | None:
        # Small models often return the one-shot example's explanation verbatim: that says
        # nothing about this latent, so it counts as no answer (asked again, then unparseable).
        text = parse_explanation(raw)
        return None if text is not None and _normalise(text) == copied else text

    explained = await _ask(
        client,
        explanation_messages(latent.latent_id, latent.construction[:n], ctx),
        parse_own_explanation,
        EXPLANATION_NUDGE,
        config.explanation_max_tokens,
        config.max_retries,
    )
    details: dict[str, Any] = {
        "prompt_version": PROMPT_VERSION,
        "oneshot": ctx.oneshot,
        "threshold": config.threshold,
        "n": n,
        "explanation_answers": explained.answers,
        "requests": explained.requests,
        "cached": explained.cached,
    }
    model = explained.model
    if explained.value is None:
        details["reason"] = (
            f"no parseable explanation of its own after {explained.requests} answer(s) "
            "(empty, malformed, or a copy of the one-shot example's)"
        )
        return LLMConcept(latent.latent_id, "", None, STATUS_UNPARSEABLE, model, details)
    text: str = explained.value
    too_rare = latent.too_rare if latent.too_rare is not None else len(latent.verification) < n
    if too_rare or not latent.verification:
        details["reason"] = (
            f"{len(latent.verification)} active verification case(s), fewer than N: "
            "too rare to verify (never verified on construction cases)"
        )
        return LLMConcept(latent.latent_id, text, None, STATUS_TOO_RARE, model, details)

    confidence, status = await _verify(latent, text, client, ctx, config, details)
    return LLMConcept(latent.latent_id, text, confidence, status, model, details)


async def _verify(
    latent: LatentCases,
    text: str,
    client: LLMClient,
    ctx: PromptContext,
    config: LLMConceptConfig,
    details: dict[str, Any],
) -> tuple[float | None, str]:
    """(confidence, status) of explanation ``text``: the LLM predicts the activation level of
    each verification (positive) and random (negative) case; eq. 4 over the parseable answers.
    Records every answer in ``details``."""
    n = config.n
    roles = [("verification", c) for c in latent.verification[:n]]
    roles += [("random", c) for c in latent.random[:n]]
    asked = await asyncio.gather(
        *(
            _ask(
                client,
                verification_messages(latent.latent_id, text, case, ctx),
                parse_level,
                LEVEL_NUDGE,
                config.level_max_tokens,
                config.max_retries,
            )
            for _, case in roles
        )
    )
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
    pos = [a.value for (role, _), a in zip(roles, asked, strict=True) if role == "verification"]
    neg = [a.value for (role, _), a in zip(roles, asked, strict=True) if role == "random"]
    n_parseable = sum(a.value is not None for a in asked)
    details["n_parseable"] = n_parseable
    details["n_unparseable"] = len(asked) - n_parseable
    if n_parseable == 0 or n_parseable < config.min_parseable_fraction * len(asked):
        details["reason"] = (
            f"only {n_parseable} of {len(asked)} verification answers were an integer 0-10 "
            f"(need {config.min_parseable_fraction:.0%})"
        )
        return None, STATUS_UNPARSEABLE
    return equation4(pos, neg, config.threshold), STATUS_VERIFIED


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
