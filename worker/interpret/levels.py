"""Activation levels 0-10 (docs/method.md §1.6, paper §3.3).

Level 0 means "not active"; levels 1-10 are equal-frequency bins of the *training-side* non-zero
activations. The authors' code pools every latent into one set of deciles, so a latent whose
activations are small never reaches the high levels and its cases are silently treated as weak.
We bin per latent (``per_latent=True``); the pooled variant is kept only to compare with the paper.

Edges are the 10%..90% quantiles (numpy's default linear interpolation), 9 per latent. A value
``v`` gets level ``1 + #{edges <= v}``, i.e. bins are ``[e_i, e_{i+1})`` like ``np.digitize``.

A latent with no training activation has no distribution to rank against: its edges are NaN and
every activation it has elsewhere gets level 1 ("active, strength not calibrated"). Level 10
would claim a strength the training side never showed, and the LLM prompts read high levels as
a strong match; NaN comparisons are false, so level 1 is what the formula gives without a branch.
"""

from __future__ import annotations

import numpy as np

N_LEVELS = 10
QUANTILES = np.arange(1, N_LEVELS) / N_LEVELS  # the 9 inner edges: 0.1 .. 0.9
LEVEL_BLOCK = 65536  # cases whose levels are assigned at a time


def check_codes(latent_idx: np.ndarray, latent_val: np.ndarray, n_latents: int) -> None:
    """Raise unless latent_idx / latent_val are [C, k] TopK codes of ``n_latents`` latents."""
    if latent_idx.ndim != 2 or latent_idx.shape != latent_val.shape:
        raise ValueError(
            f"latent_idx and latent_val must both be [C, k]; got {latent_idx.shape} "
            f"and {latent_val.shape}"
        )
    if latent_idx.size and (latent_idx.min() < 0 or latent_idx.max() >= n_latents):
        raise ValueError(
            f"latent_idx must lie in [0, {n_latents}); got range "
            f"[{latent_idx.min()}, {latent_idx.max()}]"
        )
    if latent_val.size and np.nanmin(latent_val) < 0:
        raise ValueError("latent_val has negative values; TopK codes are ReLU'd (0 = not active)")
    if np.isnan(latent_val).any():
        raise ValueError("latent_val contains NaN")


def grouped_quantiles(
    groups: np.ndarray, values: np.ndarray, n_groups: int, quantiles: np.ndarray
) -> np.ndarray:
    """[n_groups, len(quantiles)] per-group quantiles (linear interpolation), NaN for empty groups.

    Vectorised equivalent of ``np.quantile(values[groups == g], quantiles)`` for every ``g``: one
    lexsort instead of n_groups passes over ~C·k values.
    """
    order = np.lexsort((values, groups))
    g_sorted, v_sorted = groups[order], values[order].astype(np.float64)
    counts = np.bincount(g_sorted, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((n_groups, len(quantiles)), np.nan)
    has = counts > 0
    if not has.any():
        return out
    pos = quantiles[None, :] * (counts[has, None] - 1)  # [G', Q] fractional rank within the group
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    base = starts[has, None]
    v_lo, v_hi = v_sorted[base + lo], v_sorted[base + hi]
    out[has] = v_lo + (pos - lo) * (v_hi - v_lo)
    return out


def fit_level_edges(
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    fit_mask: np.ndarray,
    n_latents: int,
    per_latent: bool = True,
) -> np.ndarray:
    """[n_latents, 9] inner edges of the 10 equal-frequency levels, fitted on ``fit_mask`` cases.

    latent_idx [C, k] int, latent_val [C, k] float (0 = not active), fit_mask [C] bool (the TRAIN
    side). ``per_latent=False`` reproduces the reference code: one set of deciles over all latents'
    non-zero activations, repeated on every row. Rows of latents never active on the fit cases are
    NaN (see the module docstring for the level that gives).
    """
    check_codes(latent_idx, latent_val, n_latents)
    if fit_mask.shape != (latent_idx.shape[0],) or fit_mask.dtype != bool:
        raise ValueError(f"fit_mask must be bool [{latent_idx.shape[0]}], got {fit_mask.shape}")
    idx, val = latent_idx[fit_mask], latent_val[fit_mask]
    active = val > 0
    groups, values = idx[active].astype(np.int64), val[active]
    if per_latent:
        return grouped_quantiles(groups, values, n_latents, QUANTILES)
    pooled = grouped_quantiles(np.zeros_like(groups), values, 1, QUANTILES)
    return np.repeat(pooled, n_latents, axis=0)


def assign_levels(latent_idx: np.ndarray, latent_val: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[C, k] int64 levels in 0..10 of each recorded activation (0 = not active).

    edges [n_latents, 9] from :func:`fit_level_edges`. Level = 1 + number of edges <= value.
    """
    if edges.ndim != 2 or edges.shape[1] != N_LEVELS - 1:
        raise ValueError(f"edges must be [n_latents, {N_LEVELS - 1}], got {edges.shape}")
    check_codes(latent_idx, latent_val, edges.shape[0])
    out = np.empty(latent_idx.shape, np.int64)
    # a block of cases at a time: the [rows, k, 9] comparison stays bounded
    for lo in range(0, len(latent_idx), LEVEL_BLOCK):
        idx, val = latent_idx[lo : lo + LEVEL_BLOCK], latent_val[lo : lo + LEVEL_BLOCK]
        above = edges[idx] <= val[..., None]  # [rows, k, 9]; NaN edges compare False
        out[lo : lo + LEVEL_BLOCK] = np.where(val > 0, 1 + above.sum(axis=-1), 0)
    return out
