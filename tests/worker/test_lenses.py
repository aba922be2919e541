"""The lenses the worker computes (docs/method.md §6): confound correlations equal scipy's Spearman
rho on a constructed case, the latent map is reproducible, and after a pipeline every latent's
lens columns are in the store."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sqlalchemy import select

from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Latent
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.interpret import lenses
from worker.interpret.lenses import (
    activity_correlations,
    latent_map,
    popularity_correlations,
)
from worker.pipeline import RunConfig, run_pipeline
from worker.run import Run


def _dense(idx: np.ndarray, val: np.ndarray, n: int) -> np.ndarray:
    z = np.zeros((len(idx), n))
    for u in range(len(idx)):
        for lat, v in zip(idx[u], val[u], strict=True):
            if v > 0:
                z[u, lat] = v
    return z


def test_activity_correlation_equals_scipy_spearman_with_history_length() -> None:
    rng = np.random.default_rng(0)
    n_users, n, k = 400, 30, 4
    history = rng.integers(3, 60, n_users)
    idx = np.stack([rng.choice(n - 2, k, replace=False) for _ in range(n_users)])
    val = rng.exponential(size=(n_users, k))
    val[:, -1] = 0.0  # a slot the ReLU zeroed: not active
    # latent n-2 fires on everyone, as strongly as the history is long: rho = 1
    idx[:, 0], val[:, 0] = n - 2, history / 10
    got = activity_correlations(idx, val, history, n)
    expected = [spearmanr(col, history).statistic for col in _dense(idx, val, n).T[: n - 1]]
    np.testing.assert_allclose(got[: n - 1], expected, atol=1e-12)
    assert got[n - 2] == pytest.approx(1.0)
    assert np.isnan(got[n - 1])  # never active: no correlation (None in the store)


@pytest.mark.parametrize("cells", [4_000_000, 300], ids=["one-block", "blocks-of-2-latents"])
def test_popularity_correlation_equals_scipy_spearman_over_items(
    cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lenses, "_CHUNK_CELLS", cells)  # memory-bounded blocks: same answer
    rng = np.random.default_rng(1)
    n_items, d, n = 150, 12, 25
    item_emb = rng.standard_normal((n_items, d))
    popularity = rng.integers(0, 40, n_items)  # ties, as real counts have
    W_dec = rng.standard_normal((n, d))
    W_dec[-1] = 0.0  # a zero direction promotes nothing
    got = popularity_correlations(W_dec, item_emb, popularity)
    expected = [spearmanr(item_emb @ w, popularity).statistic for w in W_dec[:-1]]
    np.testing.assert_allclose(got[:-1], expected, atol=1e-12)
    assert np.isnan(got[-1])
    # an item embedding whose first axis is the popularity: latent along it correlates fully
    item_emb[:, 0] = popularity
    W_dec[0] = np.eye(d)[0]
    assert popularity_correlations(W_dec, item_emb, popularity)[0] == pytest.approx(1.0)


def test_latent_map_is_reproducible_and_pca_for_few_latents() -> None:
    rng = np.random.default_rng(2)
    few = rng.standard_normal((20, 8))
    x, y = latent_map(few, seed=0)
    unit = few / np.linalg.norm(few, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    first = np.linalg.svd(centred, full_matrices=False)[2][0]
    assert abs(np.corrcoef(x, centred @ first)[0, 1]) == pytest.approx(1.0)  # PC 1
    many = rng.standard_normal((80, 8))
    again = latent_map(many, seed=5), latent_map(many, seed=5)
    np.testing.assert_array_equal(again[0][0], again[1][0])
    x, y = latent_map(few[:2], seed=0)  # too few to lay out: in a row, never an error
    assert list(x) == [0.0, 1.0] and list(y) == [0.0, 0.0]


@pytest.mark.slow
def test_lens_columns_land_in_the_store_after_a_pipeline(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("lenses")
    raw, _ = generate(SyntheticConfig(n_users=200, n_items=80, n_tags=4, mean_history=15, seed=2))
    settings = Settings(data_dir=root / "var")
    config = RunConfig(
        recommender="bprmf", dataset_format="generic",
        dataset_path=str(write_generic_csv(raw, root / "csv")), dataset_name="syn", sae_scale=1,
        sae_k=4, recommender_overrides={"epochs": 2, "threads": 1}, sae_overrides={"max_epochs": 3},
    )  # fmt: skip
    run_pipeline(config, settings=settings, log=lambda _: None)
    with session_factory(settings.resolved_database_url)() as session:
        rows = session.scalars(select(Latent).order_by(Latent.idx)).all()
    run = Run(config, settings)
    dataset, rec = run.dataset, run.record
    history = [len(dataset.train_items(u)) for u in range(dataset.n_users)]
    popularity = np.bincount(dataset.train_pairs()[:, 1], minlength=dataset.n_items)
    W_dec = run.sae.W_dec.detach().numpy().astype(np.float64)
    z = _dense(rec.user_latent_idx, rec.user_latent_val, len(rows))
    assert len(rows) == W_dec.shape[0] == 64
    for row in rows:
        act = z[:, row.idx]
        if act.min() == act.max():
            assert row.activity_corr is None
        else:
            assert row.activity_corr == pytest.approx(spearmanr(act, history).statistic, abs=1e-9)
        effect = run.probe.item_emb @ W_dec[row.idx]
        assert row.popularity_corr == pytest.approx(
            spearmanr(effect, popularity).statistic, abs=1e-6
        )
        assert row.map_x is not None and row.map_y is not None
    assert len({(r.map_x, r.map_y) for r in rows}) == len(rows)  # a layout, not one point
