"""Activation levels 0-10 (docs/method.md §1.6): equal-frequency per latent, TRAIN side only."""

from __future__ import annotations

import numpy as np
import pytest

from worker.interpret.levels import assign_levels, fit_level_edges, grouped_quantiles


def _codes(pairs: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """One (latent, value) per case: [C, 1] codes."""
    idx = np.array([[lat] for lat, _ in pairs], dtype=np.int64)
    val = np.array([[v] for _, v in pairs], dtype=np.float32)
    return idx, val


def test_ten_values_fall_one_per_level() -> None:
    idx, val = _codes([(0, float(v)) for v in range(1, 11)])
    edges = fit_level_edges(idx, val, np.ones(10, bool), n_latents=1)
    # linear-interpolated deciles of 1..10: position q*9 -> 1 + 0.9 q*10
    np.testing.assert_allclose(edges[0], [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    assert assign_levels(idx, val, edges)[:, 0].tolist() == list(range(1, 11))


def test_zero_is_level_zero_and_edges_are_inclusive_below() -> None:
    idx, val = _codes([(0, float(v)) for v in range(1, 11)])
    edges = fit_level_edges(idx, val, np.ones(10, bool), n_latents=1)
    probe_idx = np.zeros((4, 1), np.int64)
    probe_val = np.array([[0.0], [1.9], [1.89], [100.0]], np.float32)
    edges32 = edges.astype(np.float32)  # compare in the values' precision
    assert assign_levels(probe_idx, probe_val, edges32)[:, 0].tolist() == [0, 2, 1, 10]


def test_per_latent_vs_pooled() -> None:
    pairs = [(0, float(v)) for v in range(1, 11)] + [(1, float(v)) for v in range(101, 111)]
    idx, val = _codes(pairs)
    fit = np.ones(20, bool)
    per = assign_levels(idx, val, fit_level_edges(idx, val, fit, 2))[:, 0]
    assert per[:10].tolist() == list(range(1, 11)) == per[10:].tolist()
    pooled_edges = fit_level_edges(idx, val, fit, 2, per_latent=False)
    assert np.array_equal(pooled_edges[0], pooled_edges[1])
    pooled = assign_levels(idx, val, pooled_edges)[:, 0]
    # pooled deciles of 20 values: the weak latent never passes level 5 (the reference's flaw)
    assert pooled[:10].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert pooled[10:].tolist() == [6, 6, 7, 7, 8, 8, 9, 9, 10, 10]


def test_edges_ignore_non_fit_cases_and_unfitted_latent_gets_level_one() -> None:
    pairs = [(0, float(v)) for v in range(1, 11)] + [(0, 1000.0), (1, 5.0)]
    idx, val = _codes(pairs)
    fit = np.array([True] * 10 + [False, False])
    edges = fit_level_edges(idx, val, fit, n_latents=2)
    np.testing.assert_allclose(edges[0, -1], 9.1)  # 1000 on a test case changes nothing
    assert np.isnan(edges[1]).all()  # latent 1 never fired on the fit side
    levels = assign_levels(idx, val, edges)[:, 0]
    assert levels[10] == 10 and levels[11] == 1


def test_multi_slot_codes_and_grouped_quantiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    C, k, n = 300, 4, 7
    idx = np.stack([rng.choice(n, size=k, replace=False) for _ in range(C)])
    val = rng.exponential(size=(C, k)).astype(np.float32)
    val[rng.random((C, k)) < 0.2] = 0.0
    edges = fit_level_edges(idx, val, np.ones(C, bool), n)
    for lat in range(n):
        v = val[(idx == lat) & (val > 0)]
        np.testing.assert_allclose(edges[lat], np.quantile(v, np.arange(1, 10) / 10))
    levels = assign_levels(idx, val, edges)
    assert ((levels == 0) == (val == 0)).all()
    # equal frequency: each latent's levels 1..10 are (nearly) equally filled
    for lat in range(n):
        counts = np.bincount(levels[(idx == lat) & (val > 0)], minlength=11)[1:]
        assert counts.max() - counts.min() <= 2
    g = np.array([0, 0, 2, 2, 2])
    q = grouped_quantiles(g, np.array([3.0, 1.0, 5.0, 4.0, 6.0]), 3, np.array([0.5]))
    assert q[0, 0] == 2.0 and np.isnan(q[1, 0]) and q[2, 0] == 5.0


def test_loud_errors() -> None:
    idx, val = _codes([(0, 1.0), (3, 2.0)])
    with pytest.raises(ValueError, match="latent_idx must lie"):
        fit_level_edges(idx, val, np.ones(2, bool), n_latents=2)
    with pytest.raises(ValueError, match="negative"):
        fit_level_edges(idx, -val, np.ones(2, bool), n_latents=4)
    with pytest.raises(ValueError, match="fit_mask"):
        fit_level_edges(idx, val, np.ones(3, bool), n_latents=4)
    with pytest.raises(ValueError, match="edges must be"):
        assign_levels(idx, val, np.zeros((4, 10)))
