"""The "Base" baseline (paper §4.3, Tables 3 and 4): the raw d dimensions treated as latents.

The paper interprets the base model's own representation dimensions with the same pipeline, to
show what the SAE adds. A dense vector has no "not active", so we define it the way a TopK SAE
would, which lets levels / examples / TF-IDF / metrics run unchanged on the result:

- each dimension is first standardised with the mean and standard deviation of the fit (TRAIN)
  cases, so a dimension with a large scale cannot be in every case's top k just by its scale
  (``standardize=False`` ranks raw values);
- a case's active dimensions are its k largest standardised values, kept only where positive
  (a dimension below its training mean is "not active", as a ReLU'd latent would be);
- the activation value is that positive standardised value, so per-dimension levels 1-10 come
  from the same equal-frequency binning (docs/method.md §1.6) as SAE latents.

Only the positive direction of each dimension is a "latent"; giving each dimension a second,
negated latent would double the Base latent count and no longer compare with the paper's
"Base, All = 64" column.
"""

from __future__ import annotations

import numpy as np

BASE_BLOCK = 65536  # cases standardised at a time


def base_latents(
    reps: np.ndarray,
    k: int,
    fit_mask: np.ndarray | None = None,
    standardize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """TopK-style codes of the raw dimensions: (latent_idx [C, k] int64, latent_val [C, k] float32).

    reps [C, d] the probed vectors; fit_mask [C] bool selects the cases the standardisation is
    fitted on (all cases when None). Rows of latent_idx are in descending value order.
    """
    if reps.ndim != 2:
        raise ValueError(f"reps must be [C, d], got {reps.shape}")
    C, d = reps.shape
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, d={d}], got {k}")
    if not np.isfinite(reps).all():
        raise ValueError("reps contains NaN or inf")
    mean, scale = np.zeros(d), np.ones(d)
    if standardize:
        fit = (reps if fit_mask is None else reps[fit_mask]).astype(np.float64)
        if len(fit) < 2:
            raise ValueError(f"standardisation needs at least 2 fit cases, got {len(fit)}")
        std = fit.std(axis=0)
        mean, scale = fit.mean(axis=0), np.where(std > 0, std, 1.0)
        del fit
    idx = np.empty((C, k), np.int64)
    val = np.empty((C, k), np.float32)
    # a block of cases at a time: float64 copies of [rows, d], not of all C
    for lo in range(0, C, BASE_BLOCK):
        x = reps[lo : lo + BASE_BLOCK].astype(np.float64)
        if standardize:
            x = (x - mean) / scale
        idx[lo : lo + BASE_BLOCK], val[lo : lo + BASE_BLOCK] = _top_k(x, k)
    return idx, val


def _top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(idx, val) of each row's k largest values, descending (ties by dimension), ReLU'd."""
    idx = np.argpartition(-x, k - 1, axis=1)[:, :k]
    val = np.take_along_axis(x, idx, axis=1)
    order = np.lexsort((idx, -val), axis=1)  # descending value, ties by dimension
    idx = np.take_along_axis(idx, order, axis=1)
    val = np.take_along_axis(val, order, axis=1)
    return idx.astype(np.int64), np.maximum(val, 0.0).astype(np.float32)
