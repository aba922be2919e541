"""Asking the LLM and scoring its level answers with eq. 4 (paper §3.3.2, docs/method.md §1.8).

``ask`` sends one request and, while the answer does not parse, shows it back with a nudge in
the same conversation. ``ask_levels`` has an explanation verified on a set of cases (a latent's
own, or -- for the null of docs/method.md §1.11 -- another latent's explanation on this latent's
cases). ``score_levels`` is eq. 4 with the minimum of parsed answers on each side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from core.llm.client import ChatAnswer, LLMClient, Message
from core.llm.labels import json_field, level_schema
from core.llm.prompts import (
    LEVEL_NUDGE,
    CaseText,
    PromptContext,
    parse_level,
    verification_messages,
)
from core.reports import min_parsed_per_side

T = TypeVar("T")
STATUS_VERIFIED, STATUS_TOO_FEW_PARSED = "verified", "too_few_parsed"
Role = tuple[str, CaseText]  # ("verification" | "random", the case)


@dataclass
class Asked:
    value: Any
    answers: list[str]  # each answer, cut to 300 characters (for the concept's details)
    last: str  # the last answer, whole (to show it back in a follow-up)
    model: str
    cached: int
    requests: int


async def ask(
    client: LLMClient,
    messages: list[Message],
    parse: Callable[[str], T | None],
    nudge: str,
    max_tokens: int,
    max_retries: int,
    response_format: dict[str, Any] | None = None,
) -> Asked:
    """Ask; while the answer does not parse, show it back with a nudge (same conversation)."""
    convo = list(messages)
    answers: list[str] = []
    cached = 0
    answer: ChatAnswer | None = None
    for _ in range(max_retries + 1):
        answer = await client.achat(convo, max_tokens=max_tokens, response_format=response_format)
        answers.append(answer.text[:300])
        cached += answer.cached
        value = parse(answer.text)
        if value is not None:
            return Asked(value, answers, answer.text, answer.model, cached, len(answers))
        convo = [
            *convo,
            {"role": "assistant", "content": answer.text},
            {"role": "user", "content": nudge},
        ]
    model = answer.model if answer is not None else client.model
    return Asked(None, answers, answer.text if answer else "", model, cached, len(answers))


def parse_level_answer(raw: str) -> int | None:
    """A level 0..10 from a JSON-schema answer (``{"level": 7}``) or a plain one (strict)."""
    value = json_field(raw, "level")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 10 else None
    if isinstance(value, str):
        return parse_level(value)
    return parse_level(raw)


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


def score_levels(
    pos: Sequence[int | None], neg: Sequence[int | None], n: int, threshold: int
) -> tuple[float | None, str, str | None]:
    """(confidence, status, reason): eq. 4 when each side has at least
    ``min_parsed_per_side(n)`` parsed answers (docs/method.md §1.8), else no confidence."""
    need = min_parsed_per_side(n)
    n_pos = sum(lv is not None for lv in pos)
    n_neg = sum(lv is not None for lv in neg)
    if n_pos < need or n_neg < need:
        reason = (
            f"too few parsed answers: {n_pos} positive and {n_neg} negative, eq. 4 needs "
            f"{need} on each side (docs/method.md §1.8)"
        )
        return None, STATUS_TOO_FEW_PARSED, reason
    return equation4(pos, neg, threshold), STATUS_VERIFIED, None


async def ask_levels(
    client: LLMClient,
    latent_id: int,
    text: str,
    roles: Sequence[Role],
    ctx: PromptContext,
    *,
    max_tokens: int,
    max_retries: int,
    structured: bool,
    on_answer: Callable[[], None] | None = None,
) -> list[Asked]:
    """The LLM's predicted level of each case's last item under explanation ``text``;
    ``on_answer`` is called as each case's answer is in (a progress report)."""

    async def one(case: CaseText) -> Asked:
        asked = await ask(
            client,
            verification_messages(latent_id, text, case, ctx, structured),
            parse_level_answer,
            LEVEL_NUDGE,
            max_tokens,
            max_retries,
            level_schema() if structured else None,
        )
        if on_answer is not None:
            on_answer()
        return asked

    return list(await asyncio.gather(*(one(case) for _, case in roles)))


def split_sides(roles: Sequence[Role], asked: Sequence[Asked]) -> tuple[list[Any], list[Any]]:
    """(positive levels, negative levels) in case order."""
    pos = [a.value for (role, _), a in zip(roles, asked, strict=True) if role == "verification"]
    neg = [a.value for (role, _), a in zip(roles, asked, strict=True) if role == "random"]
    return pos, neg
