"""Ranking metrics over 0-based target ranks (docs/method.md §1.2: full ranking, ties count
against).

Pure numpy: the ranks come from ``worker.probe.rank_targets``; everything here is a function
of the rank array alone, so it is tested against hand-computed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _check_ranks(ranks_C: np.ndarray) -> np.ndarray:
    ranks_C = np.asarray(ranks_C)
    if ranks_C.ndim != 1:
        raise ValueError(f"ranks must be a 1-d array of 0-based ranks, got shape {ranks_C.shape}")
    if ranks_C.size and ranks_C.min() < 0:
        raise ValueError(f"ranks are 0-based and non-negative, got min {ranks_C.min()}")
    return ranks_C


def per_case_hit(ranks_C: np.ndarray, k: int) -> np.ndarray:
    """[C] float64: 1 where the target is in the top ``k`` (rank < k), else 0."""
    return (_check_ranks(ranks_C) < k).astype(np.float64)


def per_case_ndcg(ranks_C: np.ndarray, k: int) -> np.ndarray:
    """[C] float64 NDCG@k of one relevant item: 1 / log2(rank + 2) if rank < k, else 0."""
    ranks_C = _check_ranks(ranks_C).astype(np.float64)
    return np.where(ranks_C < k, 1.0 / np.log2(ranks_C + 2.0), 0.0)


def hit_ndcg(ranks_C: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """HR@K and NDCG@K means, keyed ``hr@K`` / ``ndcg@K``; NaN for zero cases."""
    ranks_C = _check_ranks(ranks_C)
    out: dict[str, float] = {}
    for k in ks:
        if ranks_C.size == 0:
            out[f"hr@{k}"] = out[f"ndcg@{k}"] = float("nan")
            continue
        out[f"hr@{k}"] = float(per_case_hit(ranks_C, k).mean())
        out[f"ndcg@{k}"] = float(per_case_ndcg(ranks_C, k).mean())
    return out


def bootstrap_ci(
    values_C: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap CI of the mean of per-case values.

    docs/method.md §2: with ~600 test users ±0.01 HR is noise, so every reported figure gets an
    interval.
    """
    values_C = np.asarray(values_C, dtype=np.float64)
    if values_C.ndim != 1 or values_C.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-d array, got shape {values_C.shape}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    idx_RC = rng.integers(0, values_C.size, size=(n_boot, values_C.size))
    means_R = values_C[idx_RC].mean(axis=1)
    lo, hi = np.quantile(means_R, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(values_C.mean()), float(lo), float(hi)


def ranking_report(
    ranks_C: np.ndarray, ks: Sequence[int] = (10, 20), n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Every metric with its 95% bootstrap CI: ``{"ndcg@10": {"mean", "lo", "hi"}, ...}``."""
    out: dict[str, dict[str, float]] = {}
    for k in ks:
        for name, fn in (("hr", per_case_hit), ("ndcg", per_case_ndcg)):
            mean, lo, hi = bootstrap_ci(fn(ranks_C, k), n_boot=n_boot, seed=seed)
            out[f"{name}@{k}"] = {"mean": mean, "lo": lo, "hi": hi}
    return out


def paired_ndcg_difference(
    ranks_model_C: np.ndarray,
    ranks_base_C: np.ndarray,
    k: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Table 7's paired comparison (docs/method.md §1.9): the per-user difference NDCG@k(x̂) −
    NDCG@k(x) and the share of the base NDCG kept, each with a percentile bootstrap CI that
    resamples *users* (the same draw on both sides: the data are paired, so two separate
    intervals overstate the uncertainty). ranks_*_C [C] the target's rank per user, same users.
    """
    a = per_case_ndcg(np.asarray(ranks_model_C), k)
    b = per_case_ndcg(np.asarray(ranks_base_C), k)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired ranks must be two equal non-empty 1-d arrays: {a.shape}, {b.shape}"
        )
    rng = np.random.default_rng(seed)
    idx_RC = rng.integers(0, a.size, size=(n_boot, a.size))
    diff_R = (a - b)[idx_RC].mean(axis=1)
    base_R = b[idx_RC].mean(axis=1)
    kept_R = np.divide(
        a[idx_RC].mean(axis=1), base_R, out=np.full(n_boot, np.nan), where=base_R > 0
    )
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    lo, hi = np.quantile(diff_R, q)
    kept = float(a.mean() / b.mean()) if b.mean() > 0 else None
    kept_lo, kept_hi = np.nanquantile(kept_R, q) if np.isfinite(kept_R).any() else (None, None)
    return {
        "metric": f"ndcg@{k}",
        "diff": {"mean": float((a - b).mean()), "lo": float(lo), "hi": float(hi)},
        "retained": {
            "mean": kept,
            "lo": None if kept_lo is None else float(kept_lo),
            "hi": None if kept_hi is None else float(kept_hi),
        },
        "n": int(a.size),
        "seed": seed,
    }
