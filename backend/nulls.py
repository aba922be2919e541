"""Each confidence beside its null (docs/method.md §1.11), as the pages and JSON twins show it.

One formatting for every confidence and null percentile: a fraction to two decimals ("0.86",
:func:`conf`, the templates' ``conf`` filter), never a percentage. One verdict, decided by
``core.reports.verdict``: "verified" (confidence ≥ 0.8 and the null's rank p-value ≤ 0.05 over
n ≥ 19 draws), "not verified (below 0.8)", "not verified over null" (≥ 0.8, p > 0.05),
"no null: not verified" (≥ 0.8, but no null of ≥ 19 draws: a live explanation whose null did not
finish within the deadline, a run with too few other labels to build one from), or "degenerate"
(a label that names nothing). The p-value and n are shown beside every confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.llm.labels import degenerate_summary, rejected_because
from core.reports import (
    NULL_MIN_N,
    VERDICT_BELOW,
    VERDICT_DEGENERATE,
    VERDICT_NO_NULL,
    VERDICT_NOT_OVER_NULL,
    VERDICT_VERIFIED,
    details_null_n,
    details_null_p95,
    verdict,
)
from core.store.schema import Concept

VERIFIED = "verified"
NOT_OVER_NULL = "not verified over null"
BELOW = "not verified (below 0.8)"
NO_NULL = "no null: not verified"
DEGENERATE = "degenerate: names nothing"
# verdict code (core.reports) -> the words every page uses
VERDICT_TEXT = {
    VERDICT_VERIFIED: VERIFIED,
    VERDICT_NOT_OVER_NULL: NOT_OVER_NULL,
    VERDICT_BELOW: BELOW,
    VERDICT_NO_NULL: NO_NULL,
    VERDICT_DEGENERATE: DEGENERATE,
}


def conf(value: float | None) -> str:
    """A confidence (or a null's percentile) as every page writes it: 0.86; "—" for none."""
    return "—" if value is None else f"{value:.2f}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trust(
    confidence: float | None, details: dict[str, Any] | None, status: str | None = None
) -> dict[str, Any]:
    """A concept's null and verdict: ``null_p`` (rank p-value), ``null_n`` (draws), ``null_p95``,
    ``null_mean``, ``null_method`` (permutation: the pipeline's; live / reused: a web
    explanation's, core.llm.live_null), ``verified``, ``verdict_code`` / ``verdict`` (None
    without a confidence: the status says why) and its one-line ``verdict_text``;
    ``null_missing``: why a web explanation has no null."""
    details = details or {}
    found = details.get("null")
    null: dict[str, Any] = found if isinstance(found, dict) else {}
    p95 = details_null_p95(details)
    n = details_null_n(details)
    p = _number(null.get("p"))
    code = verdict(confidence, details, degenerate=status == VERDICT_DEGENERATE)
    shown = VERDICT_TEXT.get(code) if code else None
    text = None
    if confidence is not None:
        null_text = f" · null p = {p:.3f} (n = {n})" if p is not None and n else ""
        if null_text and n < NULL_MIN_N:
            null_text += f", fewer than the {NULL_MIN_N} draws a 5% test needs"
        text = f"confidence {conf(confidence)}{null_text} · {shown}"
    return {
        "null_p": p,
        "null_n": n,
        "null_p95": p95,
        "null_mean": _number(null.get("mean")),
        "null_method": null.get("method", "permutation") if null else None,
        "null_missing": details.get("null_missing"),
        "verified": code == VERDICT_VERIFIED,
        "verdict_code": code,
        "verdict": shown,
        "verdict_text": text,
        "reason": _reason(details),  # why there is no confidence, when there is none
        # labels rejected as naming nothing, each with its reason as a sentence ("why")
        "rejected": [
            {**r, "why": f"the label {rejected_because(str(r.get('reason', '')))}"}
            for r in details.get("rejected") or []
            if isinstance(r, dict)
        ],
    }


# How runs published before the reason was a sentence wrote it ("the label generic, and once
# more after being told (generic): ..."): recomposed from the stored rejected labels when shown.
_OLD_DEGENERATE_REASON = ", and once more after being told ("


def _reason(details: dict[str, Any]) -> str | None:
    reason = details.get("reason")
    rejected = details.get("rejected") or []
    if isinstance(reason, str) and _OLD_DEGENERATE_REASON in reason and len(rejected) == 2:
        return degenerate_summary(str(rejected[0]["reason"]), str(rejected[1]["reason"]))
    return reason


def verdict_of(code: str | None, p: float | None, n: int | None) -> dict[str, Any]:
    """A latent row's stored verdict as the list shows it: ``verdict_code`` (the badge's class),
    ``verdict`` (its words), ``null_p`` and ``null_n``."""
    return {
        "verdict_code": code,
        "verdict": VERDICT_TEXT.get(code) if code else None,
        "null_p": p,
        "null_n": n,
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
        **trust(summary.get("confidence"), details, chosen.status if chosen else None),
    }
