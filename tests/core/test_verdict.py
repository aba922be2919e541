"""The verdict of a concept (docs/method.md §1.11): confidence >= 0.8 and a null that rejects at
5% -- the rank p-value (r + 1) / (n + 1) of n >= 19 draws -- against hand-computed values."""

from __future__ import annotations

import pytest

from core.reports import (
    NULL_MIN_N,
    details_null_p,
    is_verified,
    null_stats,
    rank_p_value,
    verdict,
)


def test_rank_p_value_by_hand() -> None:
    # 19 draws all below: p = 1 / 20 = 0.05; one tie counts against the concept: 2 / 20
    assert rank_p_value(0.9, [0.5] * 19) == (pytest.approx(0.05), 0)
    assert rank_p_value(0.9, [0.5] * 18 + [0.9]) == (pytest.approx(0.1), 1)
    assert rank_p_value(0.9, [0.95, 0.3, 0.9]) == (pytest.approx(3 / 4), 2)
    assert rank_p_value(0.9, []) == (None, 0)


def test_null_stats_carries_p_r_and_n() -> None:
    null = null_stats([0.1, 0.2, 0.9, 0.4], seed=3, own=0.8)
    assert (null["n"], null["r"], null["p"]) == (4, 1, pytest.approx(2 / 5))
    assert null_stats([], own=0.9)["p"] is None


def _details(n: int, above: int = 0) -> dict:
    return {"null": null_stats([0.9] * above + [0.5] * (n - above), own=0.85)}


def test_verified_needs_19_draws_and_p_at_most_5_percent() -> None:
    assert NULL_MIN_N == 19
    # 18 draws all below: p = 1/19 > 0.05, and the null is too small to be a test
    assert details_null_p(_details(18)) is None
    assert verdict(0.85, _details(18)) == "no_null"
    assert verdict(0.85, _details(19)) == "verified"
    assert verdict(0.85, _details(39, above=1)) == "verified"  # p = 2/40 = 0.05
    assert verdict(0.85, _details(38, above=1)) == "not_over_null"  # p = 2/39
    assert verdict(0.7, _details(100)) == "below"
    assert verdict(0.85, None) == "no_null"
    assert verdict(None, None) is None
    assert verdict(None, None, degenerate=True) == "degenerate"
    assert is_verified(0.85, 0.05) and not is_verified(0.85, 0.051)
    assert not is_verified(0.79, 0.01) and not is_verified(0.9, None)


def test_an_old_null_without_a_p_value_is_no_test() -> None:
    old = {"null": {"p95": 0.3, "n": 40, "median": 0.2}}  # before the rank p-value
    assert details_null_p(old) is None and verdict(0.9, old) == "no_null"
