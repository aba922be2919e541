"""The steering API's request side: bodies and the ``_edits`` query form.

No routes here (:mod:`backend.routes.steer` has them). Validation that needs no engine happens
here (shape, strict JSON types, finite values, duplicates, a hard ceiling on values); the
per-latent ranges need the engine and are checked by it (:mod:`backend.steering`). A body that
fails validation answers 422 in the one error shape (:mod:`backend.errors`, which never echoes
the input, so ``{"value": NaN}`` cannot break the answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from backend.deps import DB_INT_MAX
from backend.steering import MAX_EDITS, SCALE_MAX, SCALE_MIN, Edit, SteeringError, SteerMode

# A hard ceiling before the per-latent check (which needs the engine): anything beyond it is
# nonsense whatever the latent, and rejecting it early keeps huge numbers out of the arithmetic.
VALUE_HARD_LIMIT = 1e6
# The longest ``_edits`` query worth parsing: MAX_EDITS pairs like "123456:-1.2345e+06".
EDITS_QUERY_MAX = MAX_EDITS * 24
# ``_edits``: up to MAX_EDITS comma-separated latent:value pairs (a value as %g or JavaScript
# writes it); the schema states it (``pattern``) and :func:`parse_edits_query` checks it.
# A value below 1e6 in size (VALUE_HARD_LIMIT): at most six digits before the point and no
# positive exponent, so the pattern itself states the ceiling.
_EDIT = r"[0-9]{1,10}:[-+]?(?:[0-9]{1,6}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?:-[0-9]{1,3}|\+?0{1,3}))?"
EDITS_PATTERN = rf"^(?:{_EDIT}(?:,{_EDIT}){{0,{MAX_EDITS - 1}}})?$"
_EDIT_RE = re.compile(_EDIT)
UNIQUE_LATENTS = "each latent at most once"


def _integral(value: object) -> object:
    # JSON Schema's "integer" is any number without a fraction: 12.0 is latent 12.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


LatentIndex = Annotated[StrictInt, BeforeValidator(_integral)]


class EditIn(BaseModel):
    """One slider: ``value`` is a scale if the latent is active for the user, else an absolute
    activation (ranges in :mod:`backend.steering`)."""

    # Strict: ``true`` is not latent 1, ``"2"`` is not 2.0 (JSON numbers only).
    model_config = ConfigDict(extra="forbid")
    latent: LatentIndex = Field(ge=0, le=DB_INT_MAX, description="latent index")
    # The hard ceiling in the schema itself, so the OpenAPI document says what is accepted.
    value: StrictFloat = Field(
        allow_inf_nan=False, ge=-VALUE_HARD_LIMIT, le=VALUE_HARD_LIMIT,
        description=(
            "scale in [-10, 10] where the latent is active for the user, else an absolute "
            "activation within ±10x the latent's largest (the user page's JSON gives each "
            "slider's range); outside it: 422"
        ),
    )  # fmt: skip


class SegmentEditIn(EditIn):
    """One segment slider: always a scale (paper §8)."""

    value: StrictFloat = Field(
        allow_inf_nan=False, ge=SCALE_MIN, le=SCALE_MAX, description="scale in [-10, 10]"
    )


def _edits_field(min_length: int = 0) -> Any:
    # uniqueItems is as much of "each latent once" as JSON Schema can say; the rest is in words.
    return Field(
        min_length=min_length, max_length=MAX_EDITS, description=f"the edits, {UNIQUE_LATENTS}",
        json_schema_extra={"uniqueItems": True},
    )  # fmt: skip


def _unique(edits: Sequence[EditIn]) -> None:
    seen: set[int] = set()
    for e in edits:
        if e.latent in seen:
            raise ValueError(f"latent {e.latent} is edited twice")
        seen.add(e.latent)


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edits: list[EditIn] = _edits_field()
    mode: SteerMode = SteerMode.ERROR_PRESERVING

    @model_validator(mode="after")
    def _no_duplicates(self) -> SteerRequest:
        _unique(self.edits)
        return self


class SegmentSteerRequest(BaseModel):
    """Segment steering: every ``value`` is a scale in [-10, 10] (paper §8)."""

    model_config = ConfigDict(extra="forbid")
    edits: list[SegmentEditIn] = _edits_field(min_length=1)
    mode: SteerMode = SteerMode.ERROR_PRESERVING
    include_inactive: StrictBool = Field(
        False, description="also set the latent (value x its mean activation) where it is off"
    )

    @model_validator(mode="after")
    def _check(self) -> SegmentSteerRequest:
        _unique(self.edits)
        return self


def to_edits(body: Sequence[EditIn]) -> list[Edit]:
    """Validated request edits -> the engine's."""
    return [Edit(latent=e.latent, value=e.value) for e in body]


def parse_edits_query(raw: str | None) -> list[Edit]:
    """``"12:2.5,40:-1"`` -> edits; the URL form of the sliders.

    Raises :class:`SteeringError` (naming the latent where one can be read) when malformed: the
    user page refuses it beside that latent's slider, its JSON twin answers 422."""
    if not raw:
        return []
    parts = raw.split(",")
    if len(parts) > MAX_EDITS:
        raise SteeringError(f"at most {MAX_EDITS} edits, got {len(parts)}")
    edits: list[Edit] = []
    for part in parts:
        latent_s, _, value_s = part.partition(":")
        if _EDIT_RE.fullmatch(part) is None:
            known = latent_s.isascii() and latent_s.isdigit() and len(latent_s) <= 10
            raise SteeringError(
                f"_edits must look like '12:2.5,40:-1' (latent:value, each value below 1e6 in "
                f"size), got {part!r}",
                int(latent_s) if known else None,
            )
        latent, value = int(latent_s), float(value_s)
        if not math.isfinite(value) or abs(value) > VALUE_HARD_LIMIT:
            raise SteeringError(
                f"_edits: the value in {part!r} must be finite and within ±{VALUE_HARD_LIMIT:g}",
                latent,
            )
        edits.append(Edit(latent, value))
    return edits


def edits_query(edits: list[Edit]) -> str:
    """The inverse of :func:`parse_edits_query` (``%g`` keeps URLs short)."""
    return ",".join(f"{e.latent}:{e.value:g}" for e in edits)
