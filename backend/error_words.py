"""Errors in the project's words (docs/architecture.md, 'Text, names and errors'): each
validation problem names its field and says what it must be, with an example, never pydantic's
wording; an address no route serves says what was not found and where to go."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from backend import urls


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Each problem as loc/msg/type only: the echoed input may be NaN or huge, never JSON-safe.
    ``msg`` is in the project's words and names the field (:func:`own_words`)."""
    problems = []
    for e in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        kind = str(e.get("type", ""))
        msg = own_words(loc, kind, str(e.get("msg", "")), e.get("ctx") or {})
        problems.append({"loc": loc, "msg": msg, "type": kind})
    return problems


# pydantic's error types in words a person can act on: what the field must be, with an example.
# {name} is the field, {…} the other keys of pydantic's ctx (docs/architecture.md, 'Text, names
# and errors').
_OWN_WORDS = {
    "missing": "{name} is required",
    "int_parsing": "{name} must be a whole number, like 3",
    "int_type": "{name} must be a whole number, like 3",
    "int_from_float": "{name} must be a whole number, like 3 (not a fraction)",
    "float_parsing": "{name} must be a number, like 0.5",
    "float_type": "{name} must be a number, like 0.5",
    "finite_number": "{name} must be a finite number, like 0.5 (not inf or nan)",
    "bool_parsing": "{name} must be true or false",
    "bool_type": "{name} must be true or false",
    "string_type": "{name} must be text",
    "greater_than": "{name} must be more than {gt}",
    "greater_than_equal": "{name} must be {ge} or more",
    "less_than": "{name} must be less than {lt}",
    "less_than_equal": "{name} must be {le} or less",
    "string_too_short": "{name} must have at least {min_length} characters",
    "string_too_long": "{name} must have at most {max_length} characters",
    "too_short": "{name} must have at least {min_length} entries",
    "too_long": "{name} must have at most {max_length} entries",
    "string_pattern_mismatch": "{name} is not in the expected form ({pattern})",
    "literal_error": "{name} must be one of {expected}",
    "enum": "{name} must be one of {expected}",
    "list_type": "{name} must be a list",
    "dict_type": "{name} must be an object",
    "model_attributes_type": "{name} must be an object",
    "json_invalid": "the body is not valid JSON ({error})",
    "extra_forbidden": "{name} is not a field this accepts",
}


def own_words(loc: list[str | int], kind: str, msg: str, ctx: dict[str, Any]) -> str:
    """pydantic's message for one problem, rewritten to name the field and say what it must be
    ("n must be a whole number, like 3"); a validator's own message keeps its words, without
    pydantic's "Value error, " prefix."""
    name = _field_name(loc)
    template = _OWN_WORDS.get(kind)
    if template is not None:
        try:
            return template.format(name=name, **{k: str(v) for k, v in ctx.items()})
        except (KeyError, IndexError, ValueError):  # a ctx without the key: pydantic's words
            pass
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return f"{name}: {msg}" if name and not msg.startswith(name) else msg


def _field_name(loc: list[str | int]) -> str:
    # ("query", "n") -> "n"; ("body", "edits", 0, "value") -> "edits[0].value"
    parts = (
        list(loc[1:])
        if loc and loc[0] in ("query", "path", "header", "cookie", "body")
        else list(loc)
    )
    if not parts:
        return "the body"
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def nothing_here(request: Request) -> str:
    """What an address no route serves answers instead of a bare "Not Found": what was not
    found and where to go (the page version adds the same places as links)."""
    return (
        f"There is no page or API at {request.url.path}. The runs are listed at "
        f"{urls.runs()} and the API is described at {urls.docs()}."
    )
