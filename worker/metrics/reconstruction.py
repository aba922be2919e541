"""Reconstruction metrics of an SAE (docs/method.md §1.4): FVU, dead-latent fraction, L0.

Pure functions. ``fvu`` and ``l0`` are duck-typed over numpy arrays and torch tensors (they only
use operators both share), so the trainer and the report compute them with the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

    Array = TypeVar("Array", np.ndarray, torch.Tensor)
else:
    Array = TypeVar("Array")


def fvu(x_ND: Array, x_hat_ND: Array) -> float:
    """Fraction of variance unexplained: sum((x - x_hat)^2) / sum((x - mean_x)^2).

    The denominator uses the mean of ``x`` itself (over rows), so predicting that mean scores
    1.0 and a perfect reconstruction 0.0. x, x_hat: [N, d] with N >= 2.
    """
    if x_ND.shape != x_hat_ND.shape:
        raise ValueError(f"x and x_hat differ in shape: {tuple(x_ND.shape)} vs {x_hat_ND.shape}")
    if x_ND.ndim != 2 or x_ND.shape[0] < 2:
        raise ValueError(f"fvu needs [N, d] with N >= 2, got shape {tuple(x_ND.shape)}")
    total = float(((x_ND - x_ND.mean(0)) ** 2).sum())
    if total == 0.0:
        raise ValueError("fvu is undefined: x has zero variance")
    return float(((x_ND - x_hat_ND) ** 2).sum()) / total


def fire_counts(idx_NK: np.ndarray, val_NK: np.ndarray, n_latents: int) -> np.ndarray:
    """[n_latents] int64 how many inputs each latent is active (value > 0) on.

    idx, val: [N, k] the sparse codes of N inputs.
    """
    idx_NK, val_NK = np.asarray(idx_NK), np.asarray(val_NK)
    if idx_NK.shape != val_NK.shape:
        raise ValueError(f"idx and val differ in shape: {idx_NK.shape} vs {val_NK.shape}")
    active = idx_NK[val_NK > 0]
    if active.size and (active.min() < 0 or active.max() >= n_latents):
        raise ValueError(f"latent index out of range 0..{n_latents - 1}")
    return np.bincount(active.ravel(), minlength=n_latents).astype(np.int64)


def dead_fraction(fire_counts_N: np.ndarray) -> float:
    """Share of latents that never fired: fire_counts_N [n_latents] from ``fire_counts``."""
    counts = np.asarray(fire_counts_N)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"fire_counts must be a non-empty 1-d array, got shape {counts.shape}")
    return float((counts == 0).mean())


def l0(acts_NK: Array) -> float:
    """Mean number of non-zero activations per input; acts [N, k] (sparse values) or [N, n]."""
    if acts_NK.ndim != 2 or acts_NK.shape[0] == 0:
        raise ValueError(f"l0 needs a non-empty [N, k] array, got shape {tuple(acts_NK.shape)}")
    return float((acts_NK != 0).sum()) / acts_NK.shape[0]
