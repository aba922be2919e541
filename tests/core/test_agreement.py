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


# --- published values, and brute-force definitions checked against them -----------------------
#
# Each reference below is a formula written out from its paper (no library), first checked
# against the value the source prints, then used on the module's own 1–4 matrix with skips.
# The published data sets use five categories, so those tests widen ``agreement.SCALE`` to 1–5
# (every function reads it at call time); the Cohen table uses our four.

# Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters. Psychological
# Bulletin 76(5), 378–382, Table 1: 30 patients, 6 psychiatrists, 5 diagnoses (1 depression,
# 2 personality disorder, 3 schizophrenia, 4 neurosis, 5 other); κ = .430. Fleiss printed the
# per-patient counts only; these per-rater rows are the R package irr's ``diagnoses`` (also in
# statsmodels' tests), which reproduce his counts. Rows are patients, columns raters.
FLEISS_1971 = np.array(
    [
        [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
        [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
        [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
        [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
        [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
        [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
        [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
        [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
    ],
    dtype=float,
)  # fmt: skip

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories; per-subject
# counts n_ij (rows subjects, columns categories 1–5); κ = 0.210.
FLEISS_WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
)  # fmt: skip

# Krippendorff, K. (2011). Computing Krippendorff's Alpha-Reliability (Annenberg School for
# Communication, departmental paper 43), section C, "Interval data with missing values": four
# observers (rows A–D) × 12 units, NaN = no value. Printed: nominal α = .743, ordinal α = .815,
# interval α = .849, ratio α = .797.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)
KRIPPENDORFF_2011_ALPHA = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}

# Altman, D. G. (1991). Practical Statistics for Medical Research, Table 14.3 (Boyd et al. 1982):
# two radiologists grade 85 xeromammograms as 1 normal, 2 benign, 3 suspected cancer, 4 cancer
# (rows radiologist A, columns B). Stata's manual ([R] kappa, the "rada"/"radb" example) prints
# κ = 0.4728, linear-weighted ("wgt(w)") 0.5684 and quadratic-weighted ("wgt(w2)") 0.6713 (the
# definition gives 0.67137, so the tests allow 1e-4; linear and quadratic differ by 0.1).
XEROMAMMOGRAMS = np.array([[21, 12, 0, 0], [4, 17, 1, 0], [3, 9, 15, 2], [0, 0, 0, 1]])
XEROMAMMOGRAM_KAPPA = {"unweighted": 0.4728, "linear": 0.5684, "quadratic": 0.6713}


def counts_to_ratings(counts: np.ndarray) -> np.ndarray:
    """Per-subject category counts [subjects, categories] -> a raters × subjects matrix of 1-based
    categories (Fleiss' κ depends on the counts only, so any assignment to raters will do)."""
    return np.array([np.repeat(np.arange(1, row.size + 1), row) for row in counts]).T.astype(float)


def table_to_ratings(table: np.ndarray) -> np.ndarray:
    """A 2-rater contingency table (rows rater A) -> the 2 × N ratings matrix (1-based)."""
    cells = [(i + 1, j + 1) for i, j in np.ndindex(table.shape) for _ in range(table[i, j])]
    return np.array(cells, dtype=float).T


def fleiss_by_hand(ratings: np.ndarray, categories: int) -> float:
    """Fleiss (1971) eqs. 2–9 over raters × subjects (complete columns only)."""
    complete = ratings[:, ~np.isnan(ratings).any(axis=0)].astype(int)
    n = complete.shape[0]
    counts = np.array([[np.sum(col == c) for c in range(1, categories + 1)] for col in complete.T])
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = (np.sum(counts**2, axis=1) - n) / (n * (n - 1))
    p_e = np.sum(p_j**2)
    return float((p_i.mean() - p_e) / (1 - p_e))


def cohen_by_hand(a: np.ndarray, b: np.ndarray, weights: str, categories: int = 4) -> float:
    """Cohen (1960) / weighted κ (Cohen 1968) with disagreement weights |i−j| or (i−j)², over the
    items both rated: 1 − Σ w·observed / Σ w·expected."""
    both = ~np.isnan(a) & ~np.isnan(b)
    observed = np.zeros((categories, categories))
    for x, y in zip(a[both].astype(int), b[both].astype(int), strict=True):
        observed[x - 1, y - 1] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices(observed.shape)
    w = {"unweighted": (i != j) * 1.0, "linear": np.abs(i - j), "quadratic": (i - j) ** 2.0}
    return float(1 - np.sum(w[weights] * observed) / np.sum(w[weights] * expected))


def alpha_by_hand(ratings: np.ndarray, level: str) -> float:
    """Krippendorff's α from the coincidence matrix (Krippendorff 2011, sections A–C):
    α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck over the units with ≥ 2 values."""
    values = np.unique(ratings[~np.isnan(ratings)])
    where = {v: k for k, v in enumerate(values)}
    o = np.zeros((values.size, values.size))
    for unit in ratings.T:
        got = unit[~np.isnan(unit)]
        if got.size < 2:
            continue
        for p in range(got.size):
            for q in range(got.size):
                if p != q:
                    o[where[got[p]], where[got[q]]] += 1 / (got.size - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = np.zeros_like(o)
    for c, k in np.ndindex(o.shape):
        vc, vk = values[c], values[k]
        if level == "nominal":
            delta[c, k] = float(c != k)
        elif level == "ordinal":
            lo, hi = min(c, k), max(c, k)
            delta[c, k] = (n_c[lo : hi + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
        elif level == "interval":
            delta[c, k] = (vc - vk) ** 2
        else:  # ratio
            delta[c, k] = ((vc - vk) / (vc + vk)) ** 2
    return float(1 - (n - 1) * np.sum(o * delta) / np.sum(np.outer(n_c, n_c) * delta))


FIVE = (1, 2, 3, 4, 5)


def test_fleiss_on_fleiss_1971_is_0_430(monkeypatch: pytest.MonkeyPatch) -> None:
    assert round(fleiss_by_hand(FLEISS_1971.T, 5), 3) == 0.430
    monkeypatch.setattr(agreement, "SCALE", FIVE)
    got = agreement.fleiss(FLEISS_1971.T)  # annotators × items, as the study matrix is
    assert got["n"] == 30 and round(got["value"], 3) == 0.430


def test_fleiss_on_the_wikipedia_example_is_0_210(monkeypatch: pytest.MonkeyPatch) -> None:
    ratings = counts_to_ratings(FLEISS_WIKIPEDIA)
    assert ratings.shape == (14, 10)
    assert round(fleiss_by_hand(ratings, 5), 3) == 0.210
    monkeypatch.setattr(agreement, "SCALE", FIVE)
    got = agreement.fleiss(ratings)
    assert got["n"] == 10 and round(got["value"], 3) == 0.210


def test_krippendorff_2011_example(monkeypatch: pytest.MonkeyPatch) -> None:
    for level, printed in KRIPPENDORFF_2011_ALPHA.items():
        assert round(alpha_by_hand(KRIPPENDORFF_2011, level), 3) == printed, level
    monkeypatch.setattr(agreement, "SCALE", FIVE)
    got = agreement.krippendorff_ordinal(KRIPPENDORFF_2011)
    # Unit 12 has a single value (observer B's) and adds nothing; the other 11 units count.
    assert got["n"] == 11 and round(got["value"], 3) == KRIPPENDORFF_2011_ALPHA["ordinal"]


def test_cohen_and_quadratic_kappa_on_the_xeromammogram_table() -> None:
    ratings = table_to_ratings(XEROMAMMOGRAMS)
    assert ratings.shape == (2, 85)
    a, b = ratings
    for weights, printed in XEROMAMMOGRAM_KAPPA.items():
        assert cohen_by_hand(a, b, weights) == pytest.approx(printed, abs=1e-4), weights
    assert agreement.cohen(a, b)["value"] == pytest.approx(0.4728, abs=1e-4)
    assert agreement.cohen(a, b, "quadratic")["value"] == pytest.approx(0.6713, abs=1e-4)
    pair = agreement.pairwise_cohen(ratings, ["A", "B"])["pairs"][0]
    assert pair["unweighted"]["value"] == pytest.approx(0.4728, abs=1e-4)
    assert pair["quadratic"]["value"] == pytest.approx(0.6713, abs=1e-4)
    assert pair["unweighted"]["n"] == 85


def test_every_statistic_equals_its_definition_on_a_matrix_with_skips() -> None:
    """The study's own case: a 1–4 scale, three annotators, one who skipped two items. The
    nominal, interval and linear variants differ here, so a wrong option cannot pass."""
    summary = agreement.summary(MATRIX, NAMES)
    for pair, (i, j) in zip(summary["cohen"]["pairs"], [(0, 1), (0, 2), (1, 2)], strict=True):
        for kind in ("unweighted", "quadratic"):
            want = cohen_by_hand(MATRIX[i], MATRIX[j], kind)
            assert pair[kind]["value"] == pytest.approx(want, abs=1e-12), (pair["a"], kind)
        linear = cohen_by_hand(MATRIX[i], MATRIX[j], "linear")
        assert abs(linear - pair["quadratic"]["value"]) > 1e-3
    fleiss = fleiss_by_hand(MATRIX, 4)
    assert summary["fleiss"]["value"] == pytest.approx(fleiss, abs=1e-12)
    alpha = {level: alpha_by_hand(MATRIX, level) for level in ("nominal", "ordinal", "interval")}
    assert summary["krippendorff_ordinal"]["value"] == pytest.approx(alpha["ordinal"], abs=1e-12)
    assert min(abs(alpha["ordinal"] - alpha[other]) for other in ("nominal", "interval")) > 0.01
    # Raters and items swapped is a different (wrong) figure:
    assert abs(fleiss_by_hand(MATRIX.T[~np.isnan(MATRIX).any(axis=0)], 4) - fleiss) > 0.01


def test_spearman_ci_is_a_bootstrap_over_the_latents() -> None:
    """docs/method.md §5: the CI resamples the latents (seeded) and recomputes ρ each time;
    checked against a brute-force loop of scipy's spearmanr over the same resamples."""
    human = [3.5, 2.0, 1.0, 4.0, 2.5, 3.0, 1.5, 2.0, 3.5, 1.0]
    machine = [0.9, 0.7, 0.2, 0.95, 0.6, 0.5, 0.4, 0.3, 0.8, 0.1]
    got = agreement.spearman(human, machine, n_boot=500, seed=4)
    xs, ys = np.array(human), np.array(machine)
    idx = np.random.default_rng(4).integers(0, 10, size=(500, 10))
    rhos = [
        spearmanr(xs[i], ys[i]).statistic for i in idx if np.ptp(xs[i]) > 0 and np.ptp(ys[i]) > 0
    ]
    lo, hi = np.quantile(rhos, [0.025, 0.975])
    assert (got["lo"], got["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert got == agreement.spearman(human, machine, n_boot=500, seed=4)
