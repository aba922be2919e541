"""Synthetic data with planted concepts: shape, determinism, coherence, TF-IDF-friendly tags."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from worker.data.preprocess import PrepareConfig, preprocess
from worker.data.synthetic import SyntheticConfig, generate, ml1m_shape

SMALL = SyntheticConfig(n_users=300, n_items=500, n_tags=20, mean_history=30, seed=7)


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def test_shape_and_contract(small) -> None:
    raw, truth = small
    inter = raw.interactions
    assert len(inter) == 300 * 30
    assert inter["user"].nunique() == 300
    assert inter["timestamp"].dtype == np.int64
    assert (inter["rating"] == 5.0).all()
    assert not inter.duplicated(["user", "item"]).any()
    assert inter.groupby("user").size().min() >= SMALL.min_history
    assert truth.item_tags.shape == (500, 2) and truth.user_tags.shape == (300, 2)
    assert all(len(set(row)) == 2 for row in truth.item_tags)
    assert len(truth.coherent) == len(inter)


def test_timestamps_increase_within_each_user(small) -> None:
    raw, _ = small
    diffs = raw.interactions.groupby("user", sort=False)["timestamp"].diff().dropna()
    assert (diffs > 0).all()


def test_histories_are_tag_coherent(small) -> None:
    raw, truth = small
    inter = raw.interactions
    user_row = inter["user"].astype(int).to_numpy() - 1
    item_row = inter["item"].astype(int).to_numpy() - 1
    shares = (truth.item_tags[item_row][:, :, None] == truth.user_tags[user_row][:, None, :]).any(
        axis=(1, 2)
    )
    # the flag says exactly which draws came from the user's tags
    assert np.array_equal(shares, truth.coherent)
    assert abs(shares.mean() - SMALL.coherence) < 0.03
    random_cfg = SyntheticConfig(**{**SMALL.__dict__, "coherence": 0.0})
    assert generate(random_cfg)[1].coherent.mean() == 0.0


def test_deterministic_by_seed(small) -> None:
    raw, truth = small
    again, truth_again = generate(SMALL)
    pd.testing.assert_frame_equal(raw.interactions, again.interactions)
    assert np.array_equal(truth.user_tags, truth_again.user_tags)
    other, _ = generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not raw.interactions["item"].equals(other.interactions["item"])


def test_popularity_is_skewed(small) -> None:
    raw, _ = small
    counts = raw.interactions["item"].value_counts().to_numpy()
    top_decile = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.2  # uniform would give 0.1


def test_tags_are_single_tfidf_terms(small) -> None:
    raw, truth = small
    assert truth.tags[7] == "planted07"
    vectorizer = TfidfVectorizer().fit(raw.items["tags"].map(" ".join))
    assert set(vectorizer.get_feature_names_out()) == set(truth.tags)
    assert truth.item_tag_names("1") == raw.items.loc[0, "tags"]
    assert len(truth.user_tag_names("3")) == 2


def test_preprocess_keeps_planted_tags_in_item_text(small) -> None:
    raw, truth = small
    ds = preprocess(raw, PrepareConfig(), log=None)
    assert ds.n_users == 300
    i = 0
    assert all(tag in ds.item_text[i] for tag in truth.item_tag_names(ds.item_ids[i]))


def test_implicit_feedback_and_validation() -> None:
    raw, _ = generate(SyntheticConfig(n_users=20, n_items=50, mean_history=8, with_ratings=False))
    assert raw.interactions["rating"].isna().all()
    with pytest.raises(ValueError, match="coherence=1.5 must be in"):
        generate(SyntheticConfig(coherence=1.5))
    with pytest.raises(ValueError, match="cannot fit"):
        generate(SyntheticConfig(n_users=10, n_items=20, n_interactions=500))


def test_ml1m_shape_in_seconds() -> None:
    start = time.perf_counter()
    raw, truth = generate(ml1m_shape())
    seconds = time.perf_counter() - start
    inter = raw.interactions
    assert len(inter) == 1_000_209
    assert inter["user"].nunique() == 6040 and inter["item"].nunique() == 3706
    assert inter.groupby("user").size().min() >= 20
    assert seconds < 30, f"generation took {seconds:.1f}s"
    assert truth.coherent.mean() > 0.7
