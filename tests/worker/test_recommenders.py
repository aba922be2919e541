"""One-epoch smoke test per model on a tiny hand-built dataset, determinism, save/load."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import worker.recommenders  # noqa: F401 - fills REGISTRY
from worker.cases import build_cases
from worker.data.dataset import Dataset
from worker.probe import probe, rank_targets, top_items
from worker.recommenders.base import REGISTRY
from worker.recommenders.io import load_recommender, save_recommender
from worker.recommenders.train import build_recommender, default_config, train_recommender

MODELS = ["bprmf", "lightgcn", "sasrec", "timirec"]
N_ITEMS = 30


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """12 users with 6-15 items each over 30 items, seeded."""
    rng = np.random.default_rng(0)
    seqs = [rng.choice(N_ITEMS, size=int(rng.integers(6, 16)), replace=False) for _ in range(12)]
    return Dataset(
        name="tiny",
        user_ids=[str(u) for u in range(len(seqs))],
        item_ids=[str(i) for i in range(N_ITEMS)],
        sequences=[s.astype(np.int64) for s in seqs],
        timestamps=[np.arange(len(s)) for s in seqs],
        item_title=[f"item {i}" for i in range(N_ITEMS)],
        item_genres=[[] for _ in range(N_ITEMS)],
        item_tags=[[] for _ in range(N_ITEMS)],
        item_text=["" for _ in range(N_ITEMS)],
    )


def quick(name: str, **kw: object):
    return default_config(name, epochs=1, eval_every=1, batch_size=8, threads=1, **kw)


def test_registry_is_complete() -> None:
    # the imported models (docs/import.md) are made by ``recsae import``, not trained here
    assert set(REGISTRY) == {"mostpop", "imported", "imported-sequential", *MODELS}


def test_unknown_model_is_loud(tiny: Dataset) -> None:
    with pytest.raises(KeyError, match="unknown recommender"):
        build_recommender("nope", 1, 1, quick("bprmf"))
    with pytest.raises(KeyError, match="no defaults"):
        default_config("nope")


@pytest.mark.parametrize("name", MODELS)
def test_one_epoch_smoke(tiny: Dataset, name: str) -> None:
    config = quick(name)
    model, report = train_recommender(tiny, name, config, progress=False)
    assert report["epochs_run"] == 1 and report["best_epoch"] == 1
    assert np.isfinite(report["history"][0]["loss"])
    for split in ("dev", "test"):
        assert set(report[split]) == {"hr@10", "ndcg@10", "hr@20", "ndcg@20"}
        assert 0.0 <= report[split]["ndcg@10"] <= report[split]["hr@10"] <= 1.0
    cases = build_cases(tiny, model.sequential, seed=0)
    x = probe(model, tiny, cases)
    assert x.shape == (len(cases), 64) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert model.item_embeddings().shape == (N_ITEMS, 64)
    assert model.score(torch.from_numpy(x[:5])).shape == (5, N_ITEMS)
    ranks = rank_targets(model, x, tiny, cases)
    assert ranks.shape == (len(cases),) and (ranks >= 0).all() and (ranks < N_ITEMS).all()
    assert top_items(model, x, tiny, cases, n=5).shape == (len(cases), 5)
    # Deterministic given the seed; a different seed gives other weights.
    again, _ = train_recommender(tiny, name, config, progress=False)
    np.testing.assert_array_equal(x, probe(again, tiny, cases))
    other, _ = train_recommender(tiny, name, replace(config, seed=1), progress=False)
    assert not np.allclose(x, probe(other, tiny, cases))


@pytest.mark.parametrize("name", MODELS)
def test_training_lowers_the_loss(tiny: Dataset, name: str) -> None:
    config = replace(quick(name, lr=1e-2), epochs=15, patience=100, dropout=0.0)
    _, report = train_recommender(tiny, name, config, progress=False)
    losses = [h["loss"] for h in report["history"]]
    assert losses[-1] < losses[0]


def test_sequential_representation_depends_on_history(tiny: Dataset) -> None:
    model, _ = train_recommender(tiny, "sasrec", quick("sasrec"), progress=False)
    cases = build_cases(tiny, True, seed=0)
    x = probe(model, tiny, cases.subset(cases.user == 0))
    assert not np.allclose(x[0], x[-1])


def test_mostpop_scores_training_popularity(tiny: Dataset) -> None:
    model, report = train_recommender(tiny, "mostpop", progress=False)
    counts = np.bincount(tiny.train_pairs()[:, 1], minlength=N_ITEMS)
    scores = model.score(torch.ones(2, 1))
    np.testing.assert_array_equal(scores[0].numpy(), counts)
    assert report["epochs_run"] == 0


@pytest.mark.parametrize("name", ["mostpop", *MODELS])
def test_save_load_round_trip(tiny: Dataset, name: str, tmp_path) -> None:
    config = quick(name)
    model, _ = train_recommender(tiny, name, config, progress=False)
    save_recommender(model, config, tmp_path / name)
    loaded = load_recommender(tmp_path / name)
    assert type(loaded) is type(model) and not loaded.training
    cases = build_cases(tiny, model.sequential, seed=0)
    np.testing.assert_allclose(probe(model, tiny, cases), probe(loaded, tiny, cases), atol=1e-6)
    np.testing.assert_allclose(
        model.item_embeddings().detach(), loaded.item_embeddings().detach(), atol=1e-6
    )


def test_load_missing_directory_is_loud(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a saved recommender"):
        load_recommender(tmp_path)


def test_lightgcn_partial_history_reps_reproduce_the_propagation(tiny: Dataset) -> None:
    """On the full training history the formula gives the model's own user vectors; on a part
    of it, a different one (worker/sae/augment.py uses it for the SAE's extra vectors)."""
    model, _ = train_recommender(tiny, "lightgcn", quick("lightgcn"), progress=False)
    model.eval()
    users = np.arange(len(tiny.sequences))
    full = [np.unique(s[:-2]) for s in tiny.sequences]
    with torch.no_grad():
        want = model.propagate()[0].numpy()
    np.testing.assert_allclose(model.partial_history_reps(users, full), want, atol=1e-5)
    half = model.partial_history_reps(users, [h[: len(h) // 2] for h in full])
    assert not np.allclose(half, want, atol=1e-3)
    bprmf, _ = train_recommender(tiny, "bprmf", quick("bprmf"), progress=False)
    assert bprmf.partial_history_reps(users, full) is None  # a BPR fold-in stands in
