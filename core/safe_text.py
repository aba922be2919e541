"""Characters that make stored text read differently from what it holds (docs/architecture.md,
"Text from people and LLMs").

Control characters (BEL, ESC, ... — C0 and C1, DEL; tab, new line and carriage return are
ordinary text) and the bidi embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069:
the "Trojan Source" characters, which reorder the text around them). A name (a study's, an
account's) that holds one is refused where it is entered (:func:`check_name`); any other text
(an LLM's explanation, a concept, names stored before the check) is shown with each such
character spelled out as ``[U+202E]`` (:func:`visible`, applied to every value a template
prints: backend/deps.py), and so is every string of the data a page embeds as JSON for its
scripts (:func:`visible_data`: plotly figures, whose hover labels, axis ticks and titles draw
text as it is, the latent map's points, "why this item").
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with each control or bidi character spelled out (``[U+202E]``)."""
    if HIDDEN_RE.search(text) is None:
        return text
    return HIDDEN_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def visible_data(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, tuples, strings, numbers, numpy arrays) with every
    string in it, keys included, as :func:`visible`; other values as they are."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible_data(k): visible_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [visible_data(v) for v in value]
    if getattr(getattr(value, "dtype", None), "kind", "") in ("U", "O"):  # numpy text or objects
        return visible_data(value.tolist())
    return value


def first_hidden(text: str) -> tuple[int, str] | None:
    """(1-based position, character) of the first control or bidi character, or None."""
    found = HIDDEN_RE.search(text)
    return None if found is None else (found.start() + 1, found.group())


def check_name(text: str, what: str = "the name") -> str:
    """``text`` if it holds no control or bidi character, else ValueError saying which and
    where (a name is printed in lists, terminals and CSV files, where either misleads)."""
    found = first_hidden(text)
    if found is not None:
        position, char = found
        kind = "a bidi control character" if char >= "\u202a" else "a control character"
        raise ValueError(f"{what} has {kind} (U+{ord(char):04X}) at position {position}: remove it")
    return text
