"""Ranking metrics against hand-computed values."""

import math

import numpy as np
import pytest

from worker.metrics.ranking import (
    bootstrap_ci,
    hit_ndcg,
    paired_ndcg_difference,
    per_case_ndcg,
    ranking_report,
)


def test_hit_ndcg_hand_computed() -> None:
    ranks = np.array([0, 1, 9, 10, 19, 25])
    out = hit_ndcg(ranks, ks=(10, 20))
    assert out["hr@10"] == pytest.approx(3 / 6)
    assert out["hr@20"] == pytest.approx(5 / 6)
    ndcg10 = (1.0 + 1 / math.log2(3) + 1 / math.log2(11)) / 6
    assert out["ndcg@10"] == pytest.approx(ndcg10)
    ndcg20 = ndcg10 + (1 / math.log2(12) + 1 / math.log2(21)) / 6
    assert out["ndcg@20"] == pytest.approx(ndcg20)


def test_per_case_ndcg_cutoff() -> None:
    np.testing.assert_allclose(per_case_ndcg(np.array([0, 2, 3]), k=3), [1.0, 0.5, 0.0])


def test_bad_ranks_are_loud() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        hit_ndcg(np.array([-1, 2]))
    with pytest.raises(ValueError, match="1-d"):
        hit_ndcg(np.zeros((2, 2)))


def test_bootstrap_ci_brackets_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(1).random(500)
    mean, lo, hi = bootstrap_ci(values, n_boot=500, seed=3)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    # Standard error of a uniform mean over 500 draws is ~0.0129; the 95% CI is about ±2 SE.
    assert 0.03 < hi - lo < 0.07
    assert bootstrap_ci(values, n_boot=500, seed=3) == (mean, lo, hi)


def test_bootstrap_ci_constant_values_have_zero_width() -> None:
    assert bootstrap_ci(np.full(10, 0.25)) == pytest.approx((0.25, 0.25, 0.25))


def test_ranking_report_keys() -> None:
    rep = ranking_report(np.array([0, 5, 30]), ks=(10,), n_boot=50)
    assert set(rep) == {"hr@10", "ndcg@10"}
    assert rep["hr@10"]["mean"] == pytest.approx(2 / 3)


def test_paired_ndcg_difference_by_hand_and_paired() -> None:
    """docs/method.md §1.9: Table 7's paired figure, NDCG@10(x_hat) - NDCG@10(x) per user."""
    model, base = np.array([0, 1, 10, 0]), np.array([0, 0, 0, 1])
    out = paired_ndcg_difference(model, base, k=10, seed=3)
    g = 1 / np.log2(3)  # rank 1 (0-based): 1 / log2(1 + 2)
    assert out["diff"]["mean"] == pytest.approx((0 + (g - 1) + (0 - 1) + (1 - g)) / 4)
    assert out["retained"]["mean"] == pytest.approx((2 + g) / (3 + g))
    assert out["diff"]["lo"] <= out["diff"]["mean"] <= out["diff"]["hi"]
    assert (out["n"], out["seed"]) == (4, 3) and out == paired_ndcg_difference(model, base, seed=3)
    # paired: the same ranks on both sides give a difference of exactly 0, interval included,
    # however spread the users' NDCGs are (two separate intervals would be wide)
    spread = np.arange(20) % 12
    same = paired_ndcg_difference(spread, spread, seed=0)
    assert (same["diff"]["lo"], same["diff"]["hi"]) == (0.0, 0.0)
    assert same["retained"]["lo"] == pytest.approx(1.0) and same["retained"]["hi"] == pytest.approx(
        1.0
    )
