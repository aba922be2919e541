"""A concept's output check as pages say it (docs/method.md §1.9, "Output check"): does steering
the latent at ±5× move its concept's share in the top 10 of the evaluation users?"""

from __future__ import annotations

from typing import Any

# The list's badge words per stored verdict (None: not checked).
OUTPUT_TEXT = {
    "confirmed": "confirmed on output",
    "refuted": "not confirmed on output",
    "too_few": "too few users to check on output",
}
OUTPUT_CODES = tuple(OUTPUT_TEXT)


def output_label(code: str | None) -> str:
    return OUTPUT_TEXT.get(code, "not checked on output") if code else "not checked on output"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _points(lo: float, hi: float) -> str:
    return f"[{100 * lo:+.0f}, {100 * hi:+.0f}]"


def _moves(change: float) -> str:
    return "raises" if change > 0 else "lowers" if change < 0 else "leaves"


def output_sentence(concept: str | None, record: dict[str, Any] | None) -> str:
    """One sentence: what boosting and suppressing did to the concept's share, with the paired
    95% CIs of the change (in percentage points), the verdict and the users it rests on."""
    if not record or not record.get("verdict"):
        return (
            "not checked on output (the check runs at publish: this concept was published "
            "before it existed, or explained since)"
        )
    verdict, n = record["verdict"], record.get("n_users", 0)
    mode = record.get("mode")
    scale = float(record.get("scale") or 5)
    if verdict == "too_few":
        return f"too few users to check on output (n = {n} evaluation users; a check needs 20)"
    who = (
        f"n = {n} active evaluation users"
        if mode == "active"
        else f"n = {n} evaluation users; the latent is active for {record.get('n_active', 0)} of "
        f"them, so the others had it set to ±{scale:g} × its mean activation"
    )
    up, down = record["boosted_change"], record["suppressed_change"]
    term = f"‘{concept}’" if concept else "the concept"
    return (
        f"boosting ×{scale:g} {_moves(up)} {term} in the top 10 from {_pct(record['share_before'])}"
        f" to {_pct(record['share_boosted'])} (change {_points(*record['boosted_ci'])} points, "
        f"95% CI); suppressing ×−{scale:g} {_moves(down)} it to "
        f"{_pct(record['share_suppressed'])} ({_points(*record['suppressed_ci'])}) — "
        f"{OUTPUT_TEXT[verdict]} ({who})"
    )


def output_of(concept: str | None, record: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON twin's fields of a concept's output check: the stored record's numbers, the
    verdict code and words and the sentence (``output_verdict`` None: not checked)."""
    record = record or {}
    code = record.get("verdict")
    return {
        "output_verdict": code,
        "output_label": output_label(code),
        "output_text": output_sentence(concept, record),
        "output": record or None,
    }
