"""Labels that name something (docs/method.md §1.8): the degenerate-label detector and the
parsing of JSON-schema answers.

An LLM explanation is *degenerate* when it

- repeats itself ("a comedy, comedy, comedy, ..."),
- is a generic phrase that would fit any latent ("the movie", "the movie it's looking for",
  "films"): nothing is left once stop words and the words of the task itself are removed, or
- copies the title of an item shown in the prompt ("the movie Star Wars: The Force Awakens").

Such a label is rejected with its reason and asked for once more (``core.llm.concepts``). Words
are the tokens of :func:`core.text.analyze`, the one tokeniser of the project.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from core.text import analyze

REPEATS, GENERIC, TITLE = "repeats itself", "generic", "copies an item title"

# Each reason as the predicate of a sentence whose subject is a label ("the label is generic").
_PREDICATE = {REPEATS: "repeats itself", GENERIC: "is generic", TITLE: "copies an item title"}


def rejected_because(reason: str) -> str:
    """``reason`` (REPEATS, GENERIC, TITLE) as a predicate: "is generic", "repeats itself"."""
    return _PREDICATE.get(reason, reason)


def degenerate_summary(first: str, second: str) -> str:
    """Why a label rejected twice (asked once more after the first) is stored degenerate, as a
    sentence: "the label is generic, and so is the one given after being told so: ..."."""
    again = (
        "and so does the one given after being told so"
        if first == second and first != GENERIC
        else "and so is the one given after being told so"
        if first == second
        else f"and the one given after being told so {rejected_because(second)}"
    )
    return f"the label {rejected_because(first)}, {again}: it names nothing, so it is not verified"


# Words of the task itself: they fit every latent, so they name nothing.
GENERIC_WORDS = frozenset(
    """movie movies film films item items product products thing things something anything
    stuff neuron neurons looking look looks find finds finding found user users sequence
    sequences activation activations activate activates recommend recommends recommended
    recommendation recommendations like likes liked watch watches watched watching content kind
    kinds type types sort sorts particular specific certain concept concepts main mainly
    different various similar related same new good great title titles genre genres
    explanation explanations behavior behaviour""".split()
)

# The label format of ``ItemLookup.label``: "title (genre, genre)"; the genres part has a letter.
_LABEL = re.compile(r"^(?P<title>.*\S)\s+\((?P<genres>[^()]*[^\W\d_][^()]*)\)$")


def split_label(label: str) -> tuple[str, list[str]]:
    """("title", [genres]) of an item label as the prompts show it (``ItemLookup.label``)."""
    match = _LABEL.match(label.strip())
    if match is None:
        return label.strip(), []
    return match["title"], [g.strip() for g in match["genres"].split(",") if g.strip()]


def _content(tokens: Iterable[str], extra_generic: frozenset[str]) -> list[str]:
    return [t for t in tokens if t not in GENERIC_WORDS and t not in extra_generic]


def degenerate_reason(
    text: str, shown_labels: Iterable[str], task_words: Iterable[str] = ()
) -> str | None:
    """Why ``text`` names nothing (``REPEATS``, ``GENERIC``, ``TITLE``), or None when it is fine.

    ``shown_labels``: the item labels the explanation prompt showed; ``task_words``: words of the
    prompt's own framing (the catalogue's name, e.g. "movies"), generic like ``GENERIC_WORDS``.
    """
    extra = frozenset(t for w in task_words for t in analyze(w))
    tokens = analyze(text)
    counts = Counter(tokens)
    consecutive = any(a == b for a, b in zip(tokens, tokens[1:], strict=False))
    if tokens and (
        max(counts.values()) >= 3
        or consecutive
        or (len(tokens) >= 4 and len(counts) <= len(tokens) / 2)
    ):
        return REPEATS
    content = set(_content(tokens, extra))
    if not content:
        return GENERIC
    labels = [split_label(label) for label in shown_labels]
    descriptive = {t for _, genres in labels for g in genres for t in analyze(g)}
    if content <= descriptive:
        return None  # the genres the prompt shows are what a good label names
    for title, _ in labels:
        title_words = set(_content(analyze(title), frozenset()))
        if content <= title_words and (len(content) >= 2 or content == title_words):
            return TITLE
    return None


def json_field(raw: str, key: str) -> Any:
    """``key``'s value in a JSON-object answer (a JSON-schema response), None if there is none.

    A string cut off by the token limit (no closing quote) is read up to where it stops.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data.get(key)
    match = re.search(rf'"{re.escape(key)}"\s*:\s*(?:"((?:[^"\\]|\\.)*)|(-?\d+))', raw)
    if match is None:
        return None
    if match[2] is not None:
        return int(match[2])
    try:
        value: str = json.loads(f'"{match[1]}"')
    except ValueError:
        value = match[1]
    return value


def explanation_schema(max_chars: int) -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for ``{"explanation": "..."}``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "explanation",
            "schema": {
                "type": "object",
                "properties": {"explanation": {"type": "string", "maxLength": max_chars}},
                "required": ["explanation"],
            },
        },
    }


def level_schema() -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for ``{"level": <integer 0..10>}``."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "level",
            "schema": {
                "type": "object",
                "properties": {"level": {"type": "integer", "enum": list(range(11))}},
                "required": ["level"],
            },
        },
    }
