"""core.agreement equals the reference libraries on fixed vectors, degenerate cases included
(issue 10; docs/method.md §5)."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from core import agreement

NAN = math.nan
# Three annotators, eight items; the third skipped items 2 and 6.
MATRIX = np.array(
    [
        [4, 3, 1, 2, 4, 1, 3, 2],
        [4, 2, 1, 2, 3, 1, 4, 2],
        [3, 3, NAN, 1, 4, 2, NAN, 2],
    ],
    dtype=float,
)
NAMES = ["ann", "bob", "cat"]


def test_cohen_equals_sklearn_unweighted_and_quadratic_on_common_items() -> None:
    result = agreement.pairwise_cohen(MATRIX, NAMES)
    a, b, c = MATRIX
    both = ~np.isnan(c)
    want = {
        ("ann", "bob", "unweighted"): cohen_kappa_score(a, b),
        ("ann", "bob", "quadratic"): cohen_kappa_score(a, b, weights="quadratic"),
        ("ann", "cat", "unweighted"): cohen_kappa_score(a[both], c[both]),
        ("ann", "cat", "quadratic"): cohen_kappa_score(a[both], c[both], weights="quadratic"),
        ("bob", "cat", "quadratic"): cohen_kappa_score(b[both], c[both], weights="quadratic"),
    }
    got = {
        (p["a"], p["b"], kind): p[kind]["value"]
        for p in result["pairs"]
        for kind in ("unweighted", "quadratic")
    }
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert result["pairs"][1]["unweighted"]["n"] == 6  # the skipped items are left out
    assert result["mean_quadratic"]["value"] == pytest.approx(
        np.mean(
            [got[(x, y, "quadratic")] for x, y in (("ann", "bob"), ("ann", "cat"), ("bob", "cat"))]
        )
    )


def test_fleiss_equals_statsmodels_on_items_everyone_rated() -> None:
    complete = MATRIX[:, ~np.isnan(MATRIX).any(axis=0)]
    table, _ = aggregate_raters(complete.T.astype(int))
    got = agreement.fleiss(MATRIX)
    assert got["n"] == 6
    assert got["value"] == pytest.approx(fleiss_kappa(table))


def test_krippendorff_equals_the_package_with_skips() -> None:
    want = krippendorff.alpha(
        reliability_data=MATRIX, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4]
    )
    got = agreement.krippendorff_ordinal(MATRIX)
    assert got["value"] == pytest.approx(want) and got["n"] == 8


def test_spearman_equals_scipy_with_a_ci_around_it() -> None:
    human = [3.5, 2.0, 1.0, 4.0, None, 2.5, 3.0, 1.5]
    machine = [0.9, 0.7, 0.2, 0.95, 0.5, 0.6, None, 0.4]
    got = agreement.spearman(human, machine)
    keep = [i for i in range(8) if human[i] is not None and machine[i] is not None]
    want = spearmanr([human[i] for i in keep], [machine[i] for i in keep]).statistic
    assert got["n"] == 6 and got["value"] == pytest.approx(want)
    assert -1 <= got["lo"] < got["value"] < got["hi"] <= 1


def test_everyone_agrees_on_one_category_is_undefined_not_nan() -> None:
    same = np.full((3, 5), 4.0)
    cohen = agreement.pairwise_cohen(same, NAMES)
    assert cohen["pairs"][0]["unweighted"]["value"] is None
    assert "one category" in cohen["pairs"][0]["unweighted"]["reason"]
    assert cohen["mean_unweighted"]["value"] is None
    assert math.isnan(cohen_kappa_score(same[0], same[1]))  # what the library says
    fleiss = agreement.fleiss(same)
    assert fleiss["value"] is None and fleiss["reason"]
    alpha = agreement.krippendorff_ordinal(same)
    assert alpha["value"] is None and alpha["reason"]


def test_everyone_agrees_on_varied_ratings_is_one() -> None:
    same = np.array([[1, 2, 3, 4, 2]] * 3, dtype=float)
    summary = agreement.summary(same, NAMES)
    assert summary["cohen"]["mean_unweighted"]["value"] == pytest.approx(1.0)
    assert summary["cohen"]["mean_quadratic"]["value"] == pytest.approx(1.0)
    assert summary["fleiss"]["value"] == pytest.approx(1.0)
    assert summary["krippendorff_ordinal"]["value"] == pytest.approx(1.0)


def test_a_rater_who_skipped_everything_and_too_few_items() -> None:
    matrix = np.array([[1, 2, 3], [NAN, NAN, NAN]])
    pair = agreement.pairwise_cohen(matrix, NAMES[:2])["pairs"][0]
    assert pair["unweighted"]["value"] is None and pair["unweighted"]["n"] == 0
    assert agreement.fleiss(matrix)["reason"] == "no item was rated by every annotator"
    assert agreement.krippendorff_ordinal(matrix)["value"] is None
    assert agreement.fleiss(matrix[:1])["reason"] == "needs at least 2 annotators"


def test_spearman_degenerate_inputs() -> None:
    assert agreement.spearman([1.0, 2.0], [0.1, 0.2])["value"] is None
    constant = agreement.spearman([2.0, 2.0, 2.0, 2.0], [0.1, 0.5, 0.7, 0.9])
    assert constant["value"] is None and "constant" in constant["reason"]
    three = agreement.spearman([1.0, 2.0, 3.0], [0.1, 0.5, 0.4])
    assert three["value"] == pytest.approx(0.5) and three["lo"] is None
