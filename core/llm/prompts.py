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

Help for a small model (docs/method.md §1.8, "prompts for a small model"): each explanation query
ends with the *candidate vocabulary*, the descriptive terms its active items carry more often
than the histories do (:func:`candidate_vocabulary`), and the explanation prompt may hold
few-shot examples (``PromptContext.examples``): other latents whose TF-IDF concept was verified,
answered with that concept. The explained latent's own example is never shown: the evidence that
selects a label never confirms it.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.llm.client import Message
from core.llm.labels import GENERIC_WORDS, split_label
from core.text import CONCEPT_STOP_WORDS, analyze

ONESHOT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "oneshot.json"
EXPLANATION_MAX_CHARS = 160
# Bumped whenever the prompt text changes; recorded in each concept's details.
PROMPT_VERSION = 3  # 2: JSON-schema answers, the degenerate follow-up; 3: vocabulary, few-shot
VOCABULARY_SIZE = 8  # candidate terms shown per explanation query
FEWSHOT_SHOWN = 2  # few-shot examples of other latents shown per explanation prompt
# Cases and history items per case of a few-shot example: the prompt fits a 4096-token context.
FEWSHOT_CASES, FEWSHOT_HISTORY = 3, 3

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
class FewShot:
    """Another latent shown as a worked example: its construction cases, their vocabulary and
    the answer (its verified TF-IDF concept as a phrase, :func:`fewshot_answer`)."""

    latent_id: int
    cases: tuple[CaseText, ...]
    vocabulary: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class PromptContext:
    """What the prompts say about the catalogue (from the run: ``item_category``/``item_name``),
    and the run's few-shot examples (``examples``; each prompt leaves out the explained latent's
    own and shows at most ``FEWSHOT_SHOWN``)."""

    item_category: str = "items"
    item_name: str = "item"
    oneshot: str = "generic"  # key in oneshot.json
    history_len: int = 10  # items of history shown per case (the most recent ones)
    examples: tuple[FewShot, ...] = ()


def candidate_vocabulary(
    active: Iterable[str], background: Iterable[str], size: int = VOCABULARY_SIZE
) -> tuple[str, ...]:
    """The terms (``core.text.analyze`` tokens) that the descriptive texts ``active`` (the items
    a latent fires on) carry more often than ``background`` (the histories shown beside them,
    activation 0): carried by two or more active items, ranked by the share of active items
    carrying it minus the share of background items, ties alphabetical; stop-like words and
    the task's own words never (``CONCEPT_STOP_WORDS``, ``core.llm.labels.GENERIC_WORDS``).
    Empty when no term is shared. Only the construction cases feed it, never the verification
    cases (docs/method.md §1.8)."""
    act = [frozenset(analyze(t)) - CONCEPT_STOP_WORDS - GENERIC_WORDS for t in active]
    bg = [frozenset(analyze(t)) for t in background]
    counts = Counter(term for tokens in act for term in tokens)
    bg_counts = Counter(term for tokens in bg for term in tokens)
    lift = {
        t: c / len(act) - (bg_counts[t] / len(bg) if bg else 0.0)
        for t, c in counts.items()
        if c >= 2
    }
    ranked = sorted(lift, key=lambda t: (-lift[t], t))
    return tuple(t for t in ranked if lift[t] > 0)[:size]


def label_vocabulary(cases: Sequence[CaseText], history_len: int) -> tuple[str, ...]:
    """:func:`candidate_vocabulary` of cases whose labels carry their genres ("title (genres)")
    and nothing else: the one-shot example's, or cases built without descriptive texts."""

    def genres(label: str) -> str:
        return ", ".join(split_label(label)[1])

    history = [h for c in cases for h in (c.history[-history_len:] if history_len > 0 else ())]
    return candidate_vocabulary([genres(c.predicted) for c in cases], map(genres, history))


def fewshot_answer(term: str, ctx: PromptContext) -> str:
    """A verified TF-IDF concept as the answer of a few-shot example: "animation movies"."""
    return f"{term} {ctx.item_category}"


def choose_fewshot(
    candidates: Sequence[FewShot], seed: int, k: int = FEWSHOT_SHOWN + 1
) -> tuple[FewShot, ...]:
    """``k`` of ``candidates`` (latents with a verified TF-IDF concept) in a seeded random
    order, one per answer (three "drama" examples teach one word), ordered by latent. ``k`` is
    one more than a prompt shows, so a prompt that leaves out its own latent still shows
    ``FEWSHOT_SHOWN``."""
    order = sorted(candidates, key=lambda e: e.latent_id)
    random.Random(seed).shuffle(order)
    chosen: dict[str, FewShot] = {}
    for example in order:
        if example.cases and len(chosen) < k:
            chosen.setdefault(example.explanation, example)
    return tuple(sorted(chosen.values(), key=lambda e: e.latent_id))


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


def _explanation_query(
    latent_id: int,
    cases: Sequence[CaseText],
    history_len: int,
    vocabulary: Sequence[str] = (),
    item_category: str = "items",
) -> str:
    blocks = "\n".join(_sequence_block(c, history_len) for c in cases)
    terms = (
        f"Terms the {item_category} with a non-zero activation share (candidates): "
        f"{', '.join(vocabulary)}\n"
        if vocabulary
        else ""
    )
    return (
        f"Neuron {latent_id}\nActivations:\n{blocks}\n{terms}"
        f"Explanation of neuron {latent_id} behavior: {_LEAD}"
    )


def _answer(key: str, value: str | int, structured: bool) -> str:
    """A one-shot answer as plain text, or as the JSON object of a JSON-schema answer."""
    return json.dumps({key: value}) if structured else str(value)


def fewshot_for(latent_id: int, ctx: PromptContext) -> list[FewShot]:
    """The few-shot examples the prompt of ``latent_id`` shows: never its own."""
    return [e for e in ctx.examples if e.latent_id != latent_id][:FEWSHOT_SHOWN]


def explanation_messages(
    latent_id: int,
    cases: Sequence[CaseText],
    ctx: PromptContext,
    structured: bool = False,
    vocabulary: Sequence[str] | None = None,
) -> list[Message]:
    """Paper §3.3.1: system, one-shot (user, assistant), the few-shot examples of other latents
    (:func:`fewshot_for`), then this latent's construction cases and candidate ``vocabulary``
    (None: from the cases' labels, :func:`label_vocabulary`).

    ``structured``: the example answers are shown as the JSON object a JSON-schema answer must be
    (docs/method.md §1.8), so the examples and the requested format agree."""
    if not cases:
        raise ValueError(f"latent {latent_id} has no construction cases to explain")
    shot = load_oneshot(ctx.oneshot)
    system = EXPLANATION_SYSTEM.format(item_category=ctx.item_category, item_name=ctx.item_name)
    hist, category = ctx.history_len, ctx.item_category
    if vocabulary is None:
        vocabulary = label_vocabulary(cases, hist)
    shot_terms = label_vocabulary(shot.explanation_cases, hist)
    messages: list[Message] = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": _explanation_query(0, shot.explanation_cases, hist, shot_terms, category),
        },
        {"role": "assistant", "content": _answer("explanation", shot.explanation, structured)},
    ]
    for example in fewshot_for(latent_id, ctx):
        query = _explanation_query(
            example.latent_id, example.cases[:FEWSHOT_CASES], min(hist, FEWSHOT_HISTORY),
            example.vocabulary,
            category,
        )  # fmt: skip
        messages += [
            {"role": "user", "content": query},
            {
                "role": "assistant",
                "content": _answer("explanation", example.explanation, structured),
            },
        ]
    query = _explanation_query(latent_id, cases, hist, vocabulary, category)
    return [*messages, {"role": "user", "content": query}]


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
