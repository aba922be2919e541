"""The steering API's request side: bodies, the ``_edits`` query form, JSON-safe 422s.

No routes here (:mod:`backend.routes.steer` has them). Validation that needs no engine happens
here (shape, finite values, duplicates, a hard ceiling on values); the per-latent ranges need
the engine and are checked by it (:mod:`backend.steering`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.steering import MAX_EDITS, SCALE_MAX, SCALE_MIN, Edit, SteerMode

# A hard ceiling before the per-latent check (which needs the engine): anything beyond it is
# nonsense whatever the latent, and rejecting it early keeps huge numbers out of the arithmetic.
VALUE_HARD_LIMIT = 1e6


class JsonSafeValidationRoute(APIRoute):
    """422s whose detail is always valid JSON.

    A body like ``{"value": NaN}`` parses (Python's json accepts the literal) and pydantic
    rejects it, but FastAPI's default 422 echoes the input back and then fails to encode NaN,
    answering 500. Here each error keeps ``loc``, ``msg`` and ``type`` only.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                detail = [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                    for e in exc.errors()
                ]
                return JSONResponse({"detail": detail}, status_code=422)

        return route


class EditIn(BaseModel):
    """One slider: ``value`` is a scale if the latent is active for the user, else an absolute
    activation (ranges in :mod:`backend.steering`)."""

    model_config = ConfigDict(extra="forbid")
    latent: int = Field(ge=0, description="latent index")
    value: float = Field(allow_inf_nan=False, description="scale (active) or activation")

    @field_validator("value")
    @classmethod
    def _bounded(cls, v: float) -> float:
        if abs(v) > VALUE_HARD_LIMIT:
            raise ValueError(f"value {v:g} is beyond ±{VALUE_HARD_LIMIT:g}")
        return v


def _unique(edits: list[EditIn]) -> None:
    seen: set[int] = set()
    for e in edits:
        if e.latent in seen:
            raise ValueError(f"latent {e.latent} is edited twice")
        seen.add(e.latent)


class SteerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edits: list[EditIn] = Field(default_factory=list, max_length=MAX_EDITS)
    mode: SteerMode = SteerMode.ERROR_PRESERVING

    @model_validator(mode="after")
    def _no_duplicates(self) -> SteerRequest:
        _unique(self.edits)
        return self


class SegmentSteerRequest(BaseModel):
    """Segment steering: every ``value`` is a scale in [-10, 10] (paper §8)."""

    model_config = ConfigDict(extra="forbid")
    edits: list[EditIn] = Field(min_length=1, max_length=MAX_EDITS)
    mode: SteerMode = SteerMode.ERROR_PRESERVING
    include_inactive: bool = Field(
        False, description="also set the latent (value x its mean activation) where it is off"
    )

    @model_validator(mode="after")
    def _check(self) -> SegmentSteerRequest:
        _unique(self.edits)
        for e in self.edits:
            if not SCALE_MIN <= e.value <= SCALE_MAX:
                raise ValueError(
                    f"latent {e.latent}: segment values are scales in "
                    f"[{SCALE_MIN:g}, {SCALE_MAX:g}], got {e.value:g}"
                )
        return self


def to_edits(body: list[EditIn]) -> list[Edit]:
    """Validated request edits -> the engine's."""
    return [Edit(latent=e.latent, value=e.value) for e in body]


def parse_edits_query(raw: str | None) -> list[Edit]:
    """``"12:2.5,40:-1"`` -> edits; the URL form of the sliders. Raises 422 when malformed."""
    if not raw:
        return []
    edits: list[Edit] = []
    for part in raw.split(","):
        latent_s, sep, value_s = part.partition(":")
        try:
            if not sep:
                raise ValueError
            latent, value = int(latent_s), float(value_s)
        except ValueError:
            raise HTTPException(
                422, f"_edits must look like '12:2.5,40:-1' (latent:value), got {part!r}"
            ) from None
        if latent < 0 or not math.isfinite(value) or abs(value) > VALUE_HARD_LIMIT:
            raise HTTPException(422, f"_edits: bad latent or value in {part!r}")
        edits.append(Edit(latent, value))
    if len(edits) > MAX_EDITS:
        raise HTTPException(422, f"at most {MAX_EDITS} edits, got {len(edits)}")
    return edits


def edits_query(edits: list[Edit]) -> str:
    """The inverse of :func:`parse_edits_query` (``%g`` keeps URLs short)."""
    return ",".join(f"{e.latent}:{e.value:g}" for e in edits)
