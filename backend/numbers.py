"""Numbers and keys as people read them: one place for the page filters (``fmt``'s very small
and very large values, ``duration``, ``words``), so every page reads them the same way."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

# Keys the worker writes, as words (the rest: underscores become spaces, acronyms capitalised).
WORDS = {
    "related": "related concept · cases with it in the top 10",
    "other": "other concepts · cases with them in the top 10",
    "related_share": "related concept · share of top-10 items",
    "other_share": "other concepts · share of top-10 items",
    "train_recommender": "train the recommender",
    "train_sae": "train the SAE",
    "explain_llm": "explain with the LLM",
    "dev_score": "dev score",
    "score_tolerance": "score tolerance",
    "vetoed_lower_fvu": "candidates vetoed despite a lower FVU",
    "k_aux": "k of the auxiliary loss",
    "dead_window": "steps before a latent counts as dead",
    "fold_in_calibration_error": "fold-in calibration error (by history length)",
    "ranking_heldout": "ranking on held-out users",
    "ranking_trained": "ranking on users that trained the SAE",
    "random_sae": "random SAE",
    "ae": "dense autoencoder",
    "lo": "95% CI low",
    "hi": "95% CI high",
}
_ACRONYMS = {"sae", "fvu", "pca", "llm", "hr", "ndcg", "ci", "id", "ae", "l2"}


def words(key: object) -> str:
    """A metric or config key in words: ``related_share`` → "related concept · share of top-10
    items", ``n_trained_users`` → "number of trained users", ``ndcg@10`` → "NDCG@10"."""
    text = str(key)
    if " › " in text:  # a path of keys (the report's generic tables)
        return " › ".join(words(part) for part in text.split(" › "))
    if text in WORDS:
        return WORDS[text]
    parts = [p for p in re.split(r"_+", text) if p]
    if len(parts) > 1 and parts[0] == "n":
        parts[0] = "number of"
    out = []
    for part in parts:
        stem, _, tail = part.partition("@")
        if stem.lower() == "tfidf":
            stem = "TF-IDF"
        elif stem.lower() in _ACRONYMS:
            stem = stem.upper()
        out.append(f"{stem}@{tail}" if tail else stem)
    return " ".join(out) if out else text


def scientific(value: float, digits: int = 3) -> str:
    """A very small or large number as "2.0 × 10⁻⁵" (never the machine's ``2.0e-05``)."""
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    return f"{mantissa:.{max(digits - 2, 1)}f} × 10{str(exponent).translate(_SUPERSCRIPT)}"


def duration(seconds: object) -> str:
    """Seconds as a duration: "30 µs", "12 ms", "4.2 s", "2 min 55 s", "1 h 3 min"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "—"
    s = float(seconds)
    if not math.isfinite(s):
        return "—"
    if s == 0:
        return "0 s"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    if s < 60:
        return f"{s:.3g} s"
    minutes, rest = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def when(value: object) -> str:
    """A moment as people read it, in UTC: "14 Dec 2026, 01:12 UTC" from a datetime (naive ones
    are UTC, as the database stores them) or its ISO string; "—" for none; other text as is."""
    if value is None or value == "":
        return "—"
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, datetime):
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%-d %b %Y, %H:%M} UTC"
