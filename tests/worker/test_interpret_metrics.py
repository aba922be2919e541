"""Paper metrics (docs/method.md §1.9), per-latent statistics and the Base baseline, on
hand-computed data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.text import analyze
from worker.cases import TEST, TRAIN, Cases
from worker.interpret.baseline import base_latents
from worker.interpret.examples import select_examples
from worker.interpret.levels import assign_levels, fit_level_edges
from worker.interpret.statistics import decoder_item_effects, latent_statistics
from worker.metrics.interpretation import (
    concept_counts,
    confidence_histogram,
    feature_coverage,
    hit_ratio_by_level,
    inter_latent_similarity,
    intra_latent_similarity,
    null_summary,
    similarity_table,
    top_latent_items,
)

EMB = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
R2 = 1 / math.sqrt(2)


def test_intra_latent_similarity_uses_all_pairs() -> None:
    items = np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]])
    sims = intra_latent_similarity(items, EMB)
    # pairs (0,1)=0, (0,2)=1/√2, (1,2)=1/√2 -> mean √2/3; (0,3) = -1; one item: undefined
    assert sims[0] == pytest.approx(2 * R2 / 3)
    assert sims[1] == pytest.approx(-1.0)
    assert np.isnan(sims[2])


def test_inter_latent_similarity_is_mean_cross_cosine() -> None:
    # A = {0, 1, 2}, D = {1}: cross cosines 0, 1, 1/√2 -> (1 + 1/√2) / 3
    assert inter_latent_similarity(np.array([[0, 1, 2], [1, -1, -1]]), EMB) == pytest.approx(
        (1 + R2) / 3
    )
    # A vs B = {0, 3}: 1, -1, 0, 0, 1/√2, -1/√2 -> 0; three latents average their 3 pairs
    three = np.array([[0, 1, 2], [0, 3, -1], [1, -1, -1]])
    assert inter_latent_similarity(three, EMB) == pytest.approx((0 + (1 + R2) / 3 + 0) / 3)
    assert math.isnan(inter_latent_similarity(np.array([[0, 1, -1]]), EMB))


def test_similarity_table_keeps_verified_latents_only() -> None:
    items = np.array([[0, 1, 2], [0, 3, -1], [1, -1, -1]])
    row = similarity_table(items, EMB, [0.9, 0.8, None])
    assert row["n_latents"] == 2
    assert row["intra"] == pytest.approx((2 * R2 / 3 - 1) / 2)
    assert row["inter"] == pytest.approx(0.0)


def test_top_latent_items_distinct_by_activation() -> None:
    idx = np.array([[0, 1], [0, 1], [0, 1], [1, 0]])
    val = np.array([[3.0, 1.0], [2.0, 0.0], [5.0, 2.0], [1.0, 0.5]], np.float32)
    top1 = np.array([7, 8, 7, 9])
    items = top_latent_items(idx, val, top1, n_latents=3, n=3)
    assert items.tolist() == [[7, 8, 9], [7, 9, -1], [-1, -1, -1]]
    masked = top_latent_items(idx, val, top1, 3, n=3, case_mask=np.array([1, 1, 0, 1], bool))
    assert masked[0].tolist() == [7, 8, 9]  # case 0 (3.0) now holds item 7


def test_concept_counts() -> None:
    counts = concept_counts(["Action", "action ", "crime", None, ""], [0.8, 0.9, 0.5, None, 1.0])
    assert counts == {
        "latents_verified": 2,
        "concepts_verified": 1,
        "latents_all": 3,
        "concepts_all": 2,
    }


def test_verified_needs_confidence_and_the_null_in_every_table() -> None:
    """docs/method.md §1.11: with nulls, a latent counts only when its null rejects at 5%."""
    texts, conf = ["action", "crime", "drama", "war"], [0.9, 0.8, 0.85, 0.95]
    null_p = [0.05, 0.1, None, 0.02]  # crime's null does not reject; drama has none
    counts = concept_counts(texts, conf, null_p=null_p)
    assert (counts["latents_verified"], counts["concepts_verified"]) == (2, 2)
    assert concept_counts(texts, conf)["latents_verified"] == 4  # the paper's P >= 0.8 alone
    items = np.array([[0, 1], [0, 3], [1, 2], [2, 3]])
    assert similarity_table(items, EMB, conf, null_p=null_p)["n_latents"] == 2
    details = [
        {"null": {"p": 0.05, "n": 19, "p95": 0.7}},  # verified: p = 1 / 20
        {"null": {"p": 0.1, "n": 19, "p95": 0.8}},  # p = 2 / 20: not verified
        {"null": {"p": 0.2, "n": 4, "p95": 0.5}},  # p would not matter: n < 19, no test
        {"null": {"p": 1 / 41, "n": 40, "p95": 0.5}},  # verified
        {"null": {"p": 0.5, "n": 30, "p95": 0.1}},  # below 0.8
        None,
    ]
    summary = null_summary([*conf, 0.3, None], details, [0.1, 0.0, 0.2, 0.3, 0.05, 0.4])
    assert summary == {
        "confident": 4,
        "verified": 2,
        "with_confidence": 5,
        "with_null": 5,
        "with_test": 4,
        "null_n_min": 19,
        "null_n_median": 19.0,
        "null_p95_mean": pytest.approx((0.7 + 0.8 + 0.5 + 0.5 + 0.1) / 5),
        "null_p95_median": pytest.approx(0.5),
        "margin_median": pytest.approx(0.1),
    }


def test_feature_coverage_through_tokenisation() -> None:
    genres = [["Action", "Sci-Fi"], ["Comedy"], ["Film-Noir", "(no genres listed)"]]
    cov = feature_coverage(genres, ["action", "sci-fi", "war"], analyze)
    assert cov["all"]["n_features"] == 5 and cov["all"]["n_covered"] == 2
    assert cov["all"]["covered"] == ["Action", "Sci-Fi"]
    assert cov["single_term"]["coverage"] == pytest.approx(2 / 4)
    tags = [["nordic folk", "folk"]]
    assert feature_coverage(tags, ["folk"], analyze)["all"]["covered"] == ["folk"]
    assert feature_coverage(tags, ["folk", "nordic"], analyze)["all"]["n_covered"] == 2


def test_hit_ratio_by_level() -> None:
    idx = np.array([[0, 1], [0, 1], [0, 2], [1, 2]])
    levels = np.array([[10, 1], [10, 0], [3, 5], [1, 0]])
    top1 = np.array([0, 1, 0, 2])
    tokens = [frozenset({"action"}), frozenset({"comedy"}), frozenset()]
    fig = hit_ratio_by_level(idx, levels, top1, {0: "action", 1: "comedy"}, tokens)
    assert fig["n"] == [2, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    ratio = fig["hit_ratio"]
    assert ratio[0] == 0.0 and ratio[2] == 1.0 and ratio[9] == 0.5 and np.isnan(ratio[1])
    assert fig["global"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    only = hit_ratio_by_level(
        idx, levels, top1, {0: "action"}, tokens, np.array([1, 0, 0, 0], bool)
    )
    assert only["n"][9] == 1 and only["hit_ratio"][9] == 1.0 and only["global"] == 1.0


def test_confidence_histogram() -> None:
    hist = confidence_histogram([0.8, 0.9, 1.0, 0.0, 0.5, None, 8 / 10, 0.7])
    assert hist["counts"] == [1, 0, 0, 0, 0, 1, 0, 1, 2, 2]
    assert hist["n_unverified"] == 1 and len(hist["edges"]) == 11
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_histogram([1.5])


def test_latent_statistics() -> None:
    idx = np.array([[0, 1], [0, 1], [2, 1]])
    val = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]], np.float32)
    st = latent_statistics(idx, val, np.array([True, True, False]), n_latents=4, bins=2)
    np.testing.assert_allclose(st.density, [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(st.max_activation, [3.0, 4.0, 0.0, 0.0])
    np.testing.assert_allclose(st.mean_activation, [2.0, 3.0, 0.0, 0.0])
    assert st.dead.tolist() == [False, False, True, True]
    assert st.histograms[0] == {"edges": [1.0, 2.0, 3.0], "counts": [1, 1]}
    assert st.histograms[2] == {"edges": [], "counts": []}


def test_decoder_item_effects() -> None:
    W_dec = np.array([[1.0, 0.0], [0.0, -1.0]])
    item_emb = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 1.0]])
    promoted, suppressed = decoder_item_effects(W_dec, item_emb, top=2)
    assert promoted[0] == [[2, 2.0], [0, 1.0]] and suppressed[0] == [[3, -1.0], [1, 0.0]]
    assert promoted[1] == [[0, 0.0], [2, 0.0]] and suppressed[1] == [[1, -1.0], [3, -1.0]]


def test_base_latents_raw_and_standardised() -> None:
    reps = np.array([[3.0, 1.0, -2.0], [0.0, 5.0, 1.0], [-1.0, -1.0, -1.0]])
    idx, val = base_latents(reps, k=2, standardize=False)
    assert idx.tolist() == [[0, 1], [1, 2], [0, 1]]
    np.testing.assert_allclose(val, [[3, 1], [5, 1], [0, 0]])  # negative part is "not active"
    # a dimension with a 100x scale no longer wins every case once standardised
    rng = np.random.default_rng(0)
    big = rng.normal(size=(200, 4)) * np.array([100.0, 1.0, 1.0, 1.0])
    raw_idx, _ = base_latents(big, k=1, standardize=False)
    std_idx, std_val = base_latents(big, k=1)
    assert (raw_idx[big[:, 0] > 5] == 0).all()
    assert np.bincount(std_idx[:, 0], minlength=4).min() > 20
    z = (big - big.mean(0)) / big.std(0)
    np.testing.assert_allclose(std_val[:, 0], np.maximum(z.max(axis=1), 0), rtol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        base_latents(reps, k=4)


def test_base_latents_run_through_levels_and_examples() -> None:
    rng = np.random.default_rng(1)
    C, d = 300, 6
    reps = rng.normal(size=(C, d))
    sides = np.where(np.arange(C) < 200, TRAIN, TEST).astype(np.int8)
    idx, val = base_latents(reps, k=2, fit_mask=sides == TRAIN)
    edges = fit_level_edges(idx, val, sides == TRAIN, n_latents=d)
    levels = assign_levels(idx, val, edges)
    cases = Cases(np.arange(C), np.ones(C, np.int64), sides)
    top_items = rng.integers(0, 50, size=(C, 10))
    ex = select_examples(cases, idx, val, levels, top_items, n_latents=d, n=5, seed=0)
    assert not ex.too_rare.any() and (ex.construction.level[:, 0] == 10).all()
