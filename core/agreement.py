"""Agreement between annotators and between humans and the automatic confidence
(definitions in docs/method.md §5).

Every statistic comes from a reference library — scikit-learn (Cohen's κ), statsmodels
(Fleiss' κ), ``krippendorff`` (α, ordinal) and SciPy (Spearman's ρ; its CI from Pearson's r on
the ranks, Fisher's z) — none is written here. What is here is the handling of degenerate
input: a statistic the library answers with NaN or an error (everyone agrees on one category,
too few items in common, a constant column) is reported as ``None`` with the reason.

Ratings come as a matrix, one row per annotator and one column per study item, NaN where an
annotator skipped an item or has not rated it yet.
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations
from typing import Any

import krippendorff
import numpy as np
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

SCALE = (1, 2, 3, 4)
Stat = dict[str, Any]  # {"value": float | None, "reason": str | None, "n": int, ...}

ONE_CATEGORY = (
    "undefined: every rating is in one category, so there is no chance agreement to correct for"
)


def _stat(value: float | None, n: int, reason: str | None = None, **extra: Any) -> Stat:
    if value is not None and not math.isfinite(value):
        value, reason = None, reason or ONE_CATEGORY
    return {"value": None if value is None else float(value), "reason": reason, "n": n, **extra}


def _quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a library function with its 0/0 RuntimeWarnings silenced (NaN is handled after)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(*args, **kwargs)


def cohen(a: np.ndarray, b: np.ndarray, weights: str | None = None) -> Stat:
    """Cohen's κ of two annotators over the items both rated (sklearn ``cohen_kappa_score``;
    ``weights`` None or "quadratic")."""
    both = ~np.isnan(a) & ~np.isnan(b)
    n = int(both.sum())
    if n < 2:
        return _stat(None, n, "fewer than 2 items rated by both")
    value = _quiet(
        cohen_kappa_score, a[both].astype(int), b[both].astype(int), labels=list(SCALE),
        weights=weights,
    )  # fmt: skip
    return _stat(value, n)


def pairwise_cohen(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Cohen's κ (unweighted and quadratic) for every pair of annotators, and their means over
    the pairs where κ is defined."""
    pairs: list[dict[str, Any]] = []
    for i, j in combinations(range(len(names)), 2):
        plain, quad = cohen(matrix[i], matrix[j]), cohen(matrix[i], matrix[j], "quadratic")
        pairs.append({"a": names[i], "b": names[j], "unweighted": plain, "quadratic": quad})

    def mean(kind: str) -> Stat:
        values = [p[kind]["value"] for p in pairs if p[kind]["value"] is not None]
        if not values:
            return _stat(None, 0, "no pair of annotators with a defined κ")
        return _stat(float(np.mean(values)), len(values))

    return {
        "pairs": pairs,
        "mean_unweighted": mean("unweighted"),
        "mean_quadratic": mean("quadratic"),
    }


def fleiss(matrix: np.ndarray) -> Stat:
    """Fleiss' κ over the items every annotator rated (statsmodels ``aggregate_raters`` +
    ``fleiss_kappa``); items someone skipped are left out (Fleiss' κ needs complete rows)."""
    if matrix.shape[0] < 2:
        return _stat(None, 0, "needs at least 2 annotators")
    complete = matrix[:, ~np.isnan(matrix).any(axis=0)]
    n = complete.shape[1]
    if n < 1:
        return _stat(None, 0, "no item was rated by every annotator")
    table, _ = aggregate_raters(complete.T.astype(int) - 1, n_cat=len(SCALE))
    return _stat(_quiet(fleiss_kappa, table, method="fleiss"), n)


def krippendorff_ordinal(matrix: np.ndarray) -> Stat:
    """Krippendorff's α at the ordinal level (``krippendorff.alpha``); it uses every item with at
    least two ratings, so skipped items cost nothing."""
    n = int((np.sum(~np.isnan(matrix), axis=0) >= 2).sum()) if matrix.size else 0
    if n < 1:
        return _stat(None, 0, "no item was rated by at least two annotators")
    try:
        value = _quiet(
            krippendorff.alpha, reliability_data=matrix, level_of_measurement="ordinal",
            value_domain=list(SCALE),
        )  # fmt: skip
    except ValueError as exc:  # the library's own account of degenerate input
        return _stat(None, n, f"undefined: {exc}")
    return _stat(value, n)


def spearman(
    x: list[float | None],
    y: list[float | None],
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Stat:
    """Spearman's ρ of the pairs where both are known (``scipy.stats.spearmanr``) with a
    ``level`` percentile bootstrap CI over the pairs (docs/method.md §5): ``n_boot`` seeded
    resamples of the latents, each ρ recomputed; a resample where one side is constant has no
    ρ and is left out (the CI says how many were used). Fisher's z with Pearson's standard
    error is not Spearman's, and assumes a normality ranks do not have."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < 3:
        return _stat(None, n, "fewer than 3 latents with both values", lo=None, hi=None)
    xs, ys = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return _stat(None, n, "undefined: one of the two is constant", lo=None, hi=None)
    rho = float(_quiet(spearmanr, xs, ys).statistic)
    lo = hi = None
    if n > 3:
        idx_RN = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        # Spearman's ρ of each resample: Pearson's r of its average ranks (ties as spearmanr)
        ra, rb = rankdata(xs[idx_RN], axis=1), rankdata(ys[idx_RN], axis=1)
        ra -= ra.mean(axis=1, keepdims=True)
        rb -= rb.mean(axis=1, keepdims=True)
        norm = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
        ok = norm > 0  # a resample with one side constant has no ρ
        draws = (ra * rb).sum(axis=1)[ok] / norm[ok]
        if draws.size:
            q = (1 - level) / 2
            lo, hi = (float(v) for v in np.quantile(draws, [q, 1 - q]))
    return _stat(rho, n, None if lo is not None else "no CI below 4 latents", lo=lo, hi=hi)


def summary(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Every agreement figure of a rating matrix (annotators × items, NaN = not rated)."""
    return {
        "annotators": len(names),
        "items": int(matrix.shape[1]) if matrix.ndim == 2 else 0,
        "cohen": pairwise_cohen(matrix, names),
        "fleiss": fleiss(matrix),
        "krippendorff_ordinal": krippendorff_ordinal(matrix),
    }
