"""Each confidence beside its null (docs/method.md §1.11), as the pages and JSON twins show it.

One formatting for every confidence and null percentile: a fraction to two decimals ("0.86",
:func:`conf`, the templates' ``conf`` filter), never a percentage. One verdict, decided by
``core.reports.is_verified``: "verified" (confidence ≥ 0.8 and above the null's 95th
percentile), "not verified (below 0.8)", "not verified over null" (≥ 0.8 but not above it), or
"no null: not verified over null" (≥ 0.8, but no null was computed: a live explanation whose
null did not finish within the deadline, a run with no other label to build one from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.reports import details_null_p95, is_confident, is_verified
from core.store.schema import Concept

VERIFIED = "verified"
NOT_OVER_NULL = "not verified over null"
BELOW = "not verified (below 0.8)"
NO_NULL = "no null: not verified over null"


def conf(value: float | None) -> str:
    """A confidence (or a null's percentile) as every page writes it: 0.86; "—" for none."""
    return "—" if value is None else f"{value:.2f}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trust(confidence: float | None, details: dict[str, Any] | None) -> dict[str, Any]:
    """A concept's null and verdict: ``null_p95``, ``null_mean``, ``null_n``, ``null_method``
    (permutation: the pipeline's; live / reused: a web explanation's, core.llm.live_null),
    ``verified``, ``verdict`` (None without a confidence: the status says why) and its one-line
    ``verdict_text``; ``null_missing``: why a web explanation has no null."""
    details = details or {}
    found = details.get("null")
    null: dict[str, Any] = found if isinstance(found, dict) else {}
    p95 = details_null_p95(details)
    verdict: str | None = None
    text = None
    if confidence is not None:
        if not is_confident(confidence):
            verdict = BELOW
        elif p95 is None:
            verdict = NO_NULL
        else:
            verdict = VERIFIED if is_verified(confidence, p95) else NOT_OVER_NULL
        shown = f" · null p95 {conf(p95)}" if p95 is not None else ""
        text = f"confidence {conf(confidence)}{shown} · {verdict}"
    return {
        "null_p95": p95,
        "null_mean": _number(null.get("mean")),
        "null_n": int(null.get("n") or 0),
        "null_method": null.get("method", "permutation") if null else None,
        "null_missing": details.get("null_missing"),
        "verified": is_verified(confidence, p95),
        "verdict": verdict,
        "verdict_text": text,
        "reason": details.get("reason"),  # why there is no confidence, when there is none
        "rejected": details.get("rejected") or [],  # labels rejected as naming nothing
    }


def summary_trust(summary: dict[str, Any], current: Sequence[Concept]) -> dict[str, Any]:
    """:func:`trust` of the concept a latent's summary shows (its best confidence, the newest of
    a tie, as ``core.store.writes.refresh_latent_summary`` picks it); ``concept_id`` names it."""
    chosen = next(
        (
            c
            for c in current
            if (c.text or None) == summary.get("text") and c.confidence == summary.get("confidence")
        ),
        None,
    )
    details = chosen.details if chosen is not None else None
    return {
        "concept_id": chosen.id if chosen else None,
        **trust(summary.get("confidence"), details),
    }
