"""The optional sensitivity-sweep stage (paper §7, Figures 7/8): one SAE per (s, k).

A thin wrapper over :func:`worker.sae.baselines.sweep` (which trains and measures) that fixes
the seed and returns rows the publisher can store as ``metrics.report.sweep`` as they are:
plain ints/floats, non-finite values as None (JSON has no NaN).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from core.jsonsafe import jsonable
from worker.sae.baselines import sweep
from worker.sae.train import SAEConfig


def sensitivity_sweep(
    x_train: np.ndarray,
    x_dev: np.ndarray,
    x_test: np.ndarray,
    scales: tuple[int, ...] = (8, 16, 32),
    ks: tuple[int, ...] = (4, 8, 16),
    seed: int = 0,
    *,
    base_config: SAEConfig | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train one SAE per (scale, k) on x_train [N, d], select on x_dev [M, d], measure on
    x_test [T, d] (held out); ``seed`` overrides ``base_config.seed`` so the rows are
    reproducible from the run's recorded seed.

    Returns one JSON-able row per (s, k), in ``scales`` × ``ks`` order, with the keys of
    :func:`worker.sae.baselines.sweep` (scale, k, n_latents, fvu_train/dev/test, pca_fvu_test,
    dead_fraction, dead_fraction_test, best_epoch, vectors_per_second).
    """
    if not scales or not ks:
        raise ValueError(f"the sweep needs at least one scale and one k, got {scales=}, {ks=}")
    d_in = np.asarray(x_train).shape[-1]
    too_big = [k for k in ks if k > d_in]
    if too_big:
        raise ValueError(f"k must be at most d = {d_in} (PCA-k needs k components), got {too_big}")
    config = replace(base_config or SAEConfig(), seed=seed)
    rows = sweep(
        x_train, x_dev, x_test, tuple(scales), tuple(ks), base_config=config, progress=progress
    )
    return jsonable(rows)
