"""The paper's two prompts (§3.3) and the strict parsing of their answers.

Explanation (§3.3.1): a system prompt describing the neuron-interpretation task, a one-shot
example (a user turn of activation sequences, the assistant's explanation), then the latent's own
construction cases. Each case is the user's real history (activation 0 on every item: the latent
fires when *predicting*) followed by the predicted item with its activation level, in the
``{item_name}<tab>activation`` format the system prompt announces, between ``<start>``/``<end>``.

Verification (§3.3.2): given an explanation, predict the 0-10 activation of the last item of a
sequence (the predicted item after the history); one-shot example, then the test case.

The one-shot examples live in ``core/prompts/oneshot.json``, one per dataset kind
(``movielens`` and the ``generic`` fallback), so they can be edited without touching code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.llm.client import Message

ONESHOT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "oneshot.json"
EXPLANATION_MAX_CHARS = 160
# Bumped whenever the prompt text changes; recorded in each concept's details.
PROMPT_VERSION = 2  # 2: JSON-schema answers (one-shot shown as JSON), the degenerate follow-up

_LEAD = "the main thing this neuron does is find"

EXPLANATION_SYSTEM = (
    "We're studying neurons in a recommendation model that is used to recommend "
    "{item_category}. Each neuron looks for some particular concepts in {item_category}. "
    "Look at the parts of the {item_name} the neuron activates for and summarize in a single "
    "sentence what the neuron is looking for. Don't list examples of words.\n"
    "The activation format is {item_name}<tab>activation. Activation values range from 0 to 10. "
    "A neuron finding what it's looking for is represented by a non-zero activation value. "
    "The higher the activation value, the stronger the match."
)

VERIFICATION_SYSTEM = (
    "We're studying neurons in a recommendation model that is used to recommend "
    "{item_category}. Each neuron looks for some particular concepts in {item_category}. "
    "Look at an explanation of what the neuron does, and try to predict its activations on a "
    "particular {item_name}. The activation format is {item_name}<tab>activation, and "
    "activations range from 0 to 10. Most activations will be 0. Now, we're going predict the "
    "activation of a new neuron on a single {item_name}, following the same rules as the "
    "examples above."
)

EXPLANATION_NUDGE = (
    "Answer with one short phrase that completes the sentence 'the main thing this neuron does "
    "is find ...', and nothing else."
)
LEVEL_NUDGE = "Answer with a single integer from 0 to 10 and nothing else."
# After a degenerate label (core.llm.labels, docs/method.md §1.8): why it was rejected.
RELABEL_NUDGES = {
    "repeats itself": "That answer repeats itself.",
    "generic": "That answer would fit any neuron: it names nothing these {item_category} share.",
    "copies an item title": "That answer names one of the {item_category} shown, not a concept.",
}
RELABEL_ASK = (
    " In one short phrase, say what these {item_category} have in common (for example a genre, "
    "a theme, a period, an audience or a style), completing 'the main thing this neuron does "
    "is find ...'."
)


@dataclass(frozen=True)
class CaseText:
    """One case as the prompts show it: the user's real history, then the predicted item.

    history: item labels, chronological (the prompt keeps the last ``history_len``).
    predicted: the model's top-1 item's label. level: the latent's activation level 0-10 on it.
    """

    history: tuple[str, ...]
    predicted: str
    level: int


@dataclass(frozen=True)
class OneShot:
    explanation_cases: tuple[CaseText, ...]
    explanation: str
    verification_case: CaseText  # level = the example's answer
    verification_explanation: str


@dataclass(frozen=True)
class PromptContext:
    """What the prompts say about the catalogue (from the run: ``item_category``/``item_name``)."""

    item_category: str = "items"
    item_name: str = "item"
    oneshot: str = "generic"  # key in oneshot.json
    history_len: int = 10  # items of history shown per case (the most recent ones)


def oneshot_kind(dataset_name: str) -> str:
    """Which one-shot example fits a dataset: MovieLens variants, else the generic one."""
    name = dataset_name.lower()
    return "movielens" if "movielens" in name or name.startswith(("ml-", "ml_")) else "generic"


def _case(raw: dict[str, Any]) -> CaseText:
    return CaseText(tuple(raw["history"]), raw["predicted"], int(raw["level"]))


@lru_cache(maxsize=8)
def load_oneshot(kind: str, path: Path = ONESHOT_PATH) -> OneShot:
    """The one-shot example of ``kind``; an unknown kind is an error, not a silent fallback."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if kind not in data:
        known = sorted(k for k in data if not k.startswith("_"))
        raise KeyError(f"no one-shot example {kind!r} in {path}; known kinds: {known}")
    entry = data[kind]
    ver = entry["verification"]
    return OneShot(
        explanation_cases=tuple(_case(c) for c in entry["explanation"]["cases"]),
        explanation=entry["explanation"]["explanation"],
        verification_case=CaseText(tuple(ver["history"]), ver["last_item"], int(ver["level"])),
        verification_explanation=ver["explanation"],
    )


def _sequence_block(case: CaseText, history_len: int) -> str:
    history = case.history[-history_len:] if history_len > 0 else ()
    lines = [f"{title}\t0" for title in history]
    lines.append(f"{case.predicted}\t{case.level}")
    return "<start>\n" + "\n".join(lines) + "\n<end>"


def _explanation_query(latent_id: int, cases: Sequence[CaseText], history_len: int) -> str:
    blocks = "\n".join(_sequence_block(c, history_len) for c in cases)
    return (
        f"Neuron {latent_id}\nActivations:\n{blocks}\n"
        f"Explanation of neuron {latent_id} behavior: {_LEAD}"
    )


def _answer(key: str, value: str | int, structured: bool) -> str:
    """A one-shot answer as plain text, or as the JSON object of a JSON-schema answer."""
    return json.dumps({key: value}) if structured else str(value)


def explanation_messages(
    latent_id: int, cases: Sequence[CaseText], ctx: PromptContext, structured: bool = False
) -> list[Message]:
    """Paper §3.3.1: system, one-shot (user, assistant), then this latent's construction cases.

    ``structured``: the one-shot answer is shown as the JSON object a JSON-schema answer must be
    (docs/method.md §1.8), so the example and the requested format agree."""
    if not cases:
        raise ValueError(f"latent {latent_id} has no construction cases to explain")
    shot = load_oneshot(ctx.oneshot)
    system = EXPLANATION_SYSTEM.format(item_category=ctx.item_category, item_name=ctx.item_name)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": _explanation_query(0, shot.explanation_cases, ctx.history_len)},
        {"role": "assistant", "content": _answer("explanation", shot.explanation, structured)},
        {"role": "user", "content": _explanation_query(latent_id, cases, ctx.history_len)},
    ]


def _verification_query(
    latent_id: int, explanation: str, case: CaseText, ctx: PromptContext
) -> str:
    history = case.history[-ctx.history_len :] if ctx.history_len > 0 else ()
    sequence = "\n".join([*history, case.predicted])
    name = ctx.item_name
    return (
        f"Neuron {latent_id}\n"
        f"Explanation of neuron {latent_id} behavior: {_LEAD} {explanation}\n"
        f"Sequence:\n{sequence}\n"
        f"Last {name} in the sequence:\n{case.predicted}\n"
        f"Last {name} activation, considering the {name} in the context in which it appeared "
        "in the sequence:"
    )


def verification_messages(
    latent_id: int, explanation: str, case: CaseText, ctx: PromptContext, structured: bool = False
) -> list[Message]:
    """Paper §3.3.2: predict the activation level of ``case.predicted`` (its ``level`` unused);
    ``structured`` as in :func:`explanation_messages`."""
    shot = load_oneshot(ctx.oneshot)
    system = VERIFICATION_SYSTEM.format(item_category=ctx.item_category, item_name=ctx.item_name)
    example = _verification_query(0, shot.verification_explanation, shot.verification_case, ctx)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": example},
        {
            "role": "assistant",
            "content": _answer("level", shot.verification_case.level, structured),
        },
        {"role": "user", "content": _verification_query(latent_id, explanation, case, ctx)},
    ]


def relabel_nudge(reason: str, ctx: PromptContext) -> str:
    """The follow-up that asks once more after a degenerate label, saying why it was rejected."""
    text = RELABEL_NUDGES.get(reason, "That answer names nothing.") + RELABEL_ASK
    return text.format(item_category=ctx.item_category)


_PREFIXES = re.compile(
    r"^\s*(?:explanation of neuron \d+ behaviou?r\s*:?\s*)?"
    r"(?:the main thing this neuron does is (?:to )?finds?\s*:?\s*)?",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’*_ "


def parse_explanation(raw: str, max_chars: int = EXPLANATION_MAX_CHARS) -> str | None:
    """The concept in an explanation answer, cleaned; None when there is none.

    Keeps the first non-empty line, strips the prompt's own lead-in if the model repeated it,
    quotes and trailing periods, and caps the length at a word boundary.
    """
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if not lines:
        return None
    text = _PREFIXES.sub("", lines[0]).strip(_QUOTES).rstrip(".").strip(_QUOTES).strip()
    if len(text) > max_chars:
        cut = text[:max_chars].rsplit(" ", 1)[0]
        text = (cut or text[:max_chars]).rstrip(" ,;:.")
    if sum(ch.isalpha() for ch in text) < 2:
        return None
    return text


_LEVEL = re.compile(r"(10|[0-9])")


def parse_level(raw: str) -> int | None:
    """An activation level 0..10 when the answer is exactly that integer, else None.

    Strict on purpose (docs/method.md §3: the reference code counted out-of-range answers as correct
    negatives): "7", " 7.", "'7'" parse; "11", "-1", "7/10", "about 7" do not.
    """
    text = raw.strip().strip(_QUOTES).rstrip(".").strip()
    match = _LEVEL.fullmatch(text)
    return int(match.group(1)) if match else None
