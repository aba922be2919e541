"""The SAE's baselines: PCA-k, random SAE, dense 8-unit AE, the (s, k) sweep (docs/method.md §1.4,
§1.9)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.worker.test_sae import FAST, planted
from worker.metrics.reconstruction import fvu
from worker.sae.baselines import pca_fvu, random_sae, sweep, train_dense_ae
from worker.sae.train import encode_batched, train_sae

torch.set_num_threads(1)


def test_pca_with_all_components_explains_everything() -> None:
    x_train, x_eval = planted(200, d=8), planted(50, d=8, seed=1)
    assert pca_fvu(x_train, x_eval, 8) == pytest.approx(0.0, abs=1e-10)
    fvus = [pca_fvu(x_train, x_eval, k) for k in (1, 2, 4, 6)]
    assert fvus == sorted(fvus, reverse=True) and 0.0 < fvus[-1] < fvus[0] < 1.0
    with pytest.raises(ValueError, match="k must be"):
        pca_fvu(x_train, x_eval, 9)


def test_random_sae_is_worse_than_trained() -> None:
    x, x_dev, x_test = planted(2000), planted(200, seed=1), planted(200, seed=2)
    sae, _ = train_sae(x, x_dev, replace(FAST, batch_size=128, max_epochs=15), progress=False)
    rand = random_sae(16, sae.n_latents, sae.k, x.mean(0), seed=0)
    trained_fvu = fvu(x_test, encode_batched(sae, x_test)[2])
    random_fvu = fvu(x_test, encode_batched(rand, x_test)[2])
    assert trained_fvu < 0.5 * random_fvu
    torch.testing.assert_close(rand.b_dec.detach(), torch.as_tensor(x.mean(0)))


def test_dense_ae_learns_low_rank_data() -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, 12))
    codes = rng.uniform(0.0, 1.0, size=(1200, 4))  # non-negative: a ReLU AE can represent it
    x = (codes @ basis + 1.0).astype(np.float32)
    model, report = train_dense_ae(x[:1000], x[1000:], hidden=8, max_epochs=150, patience=20)
    assert report["fvu_dev"] < 0.1, report
    assert model.encode(torch.as_tensor(x[:3])).shape == (3, 8)
    assert 1 <= report["best_epoch"] <= report["epochs"]


def test_sweep_reports_every_scale_and_k() -> None:
    x, x_dev, x_test = planted(300, d=8), planted(60, d=8, seed=1), planted(60, d=8, seed=2)
    rows = sweep(
        x, x_dev, x_test, scales=(1, 2), ks=(2, 4), base_config=replace(FAST, max_epochs=2)
    )
    assert [(r["scale"], r["k"]) for r in rows] == [(1, 2), (1, 4), (2, 2), (2, 4)]
    assert [r["n_latents"] for r in rows] == [8, 8, 16, 16]
    for row in rows:
        assert 0.0 <= row["dead_fraction"] <= 1.0 and 0.0 < row["fvu_test"]
        assert row["pca_fvu_test"] == pytest.approx(pca_fvu(x, x_test, row["k"]))
