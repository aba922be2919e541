"""Issue 12 item 4, bounded memory: record and interpret work a block of cases at a time, and the
blocks change nothing — the codes, levels and Base codes equal the all-at-once computation (the
pre-issue-12 code, restated here as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.interpret import baseline, levels
from worker.interpret.levels import assign_levels, fit_level_edges
from worker.sae.model import TopKSAE
from worker.sae.train import encode_batched
from worker.stages.record import encode_codes


def _reference_levels(idx: np.ndarray, val: np.ndarray, edges: np.ndarray) -> np.ndarray:
    above = edges[idx] <= val[..., None]
    return np.where(val > 0, 1 + above.sum(axis=-1), 0).astype(np.int64)


def _reference_base(reps: np.ndarray, k: int, fit_mask: np.ndarray) -> tuple[np.ndarray, ...]:
    x = reps.astype(np.float64)
    fit = x[fit_mask]
    std = fit.std(axis=0)
    x = (x - fit.mean(axis=0)) / np.where(std > 0, std, 1.0)
    idx = np.argpartition(-x, k - 1, axis=1)[:, :k]
    val = np.take_along_axis(x, idx, axis=1)
    order = np.lexsort((idx, -val), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    val = np.take_along_axis(val, order, axis=1)
    return idx.astype(np.int64), np.maximum(val, 0.0).astype(np.float32)


@pytest.fixture
def sae_and_vectors() -> tuple[TopKSAE, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40_000, 16)).astype(np.float32)  # three of record's batches
    sae = TopKSAE(16, 128, 4, b_dec=torch.as_tensor(x.mean(0)), seed=0)
    return sae, x


def test_record_codes_in_batches_equal_encode_batched(sae_and_vectors) -> None:
    sae, x = sae_and_vectors
    want_idx, want_val, _ = encode_batched(sae, x)
    # the same batches as encode_batched (the encoder's matmul rounds by batch shape)
    idx, val = encode_codes(sae, x)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(val, want_val)
    assert idx.dtype == want_idx.dtype and val.dtype == want_val.dtype


def test_levels_in_blocks_equal_levels_at_once(sae_and_vectors, monkeypatch) -> None:
    sae, x = sae_and_vectors
    idx, val = encode_codes(sae, x[:5_000])
    fit = np.arange(len(idx)) % 3 != 0
    edges = fit_level_edges(idx, val, fit, sae.n_latents)
    edges[:5] = np.nan  # latents never active on the fit side: level 1 wherever active
    monkeypatch.setattr(levels, "LEVEL_BLOCK", 777)
    got = assign_levels(idx, val, edges)
    np.testing.assert_array_equal(got, _reference_levels(idx, val, edges))
    assert got.dtype == np.int64 and set(np.unique(got)) <= set(range(11))


def test_base_codes_in_blocks_equal_base_codes_at_once(sae_and_vectors, monkeypatch) -> None:
    _, x = sae_and_vectors
    x = x[:5_000] * np.linspace(0.1, 10, x.shape[1], dtype=np.float32)  # unequal scales
    fit = np.arange(len(x)) % 4 != 0
    monkeypatch.setattr(baseline, "BASE_BLOCK", 611)
    got = baseline.base_latents(x, 4, fit_mask=fit)
    want = _reference_base(x, 4, fit)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
