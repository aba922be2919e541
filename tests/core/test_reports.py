"""The typed reports read a ``metrics`` column of any age and keep everything it holds."""

from __future__ import annotations

import math

from core.reports import RunMetrics, TuningSummary

# A metrics column as the worker published it before the typed records existed (trimmed from a
# real BPRMF run on the demo data), with a key no model names and a NaN inside a list.
OLD_COLUMN = {
    "dataset": {"users": 601, "items": 1955, "interactions": 41227, "kcore_rounds": 4},
    "recommender": {
        "name": "bprmf",
        "best_epoch": 16,
        "test_ci": {"ndcg@10": {"mean": 0.0276, "lo": 0.0189, "hi": 0.0391}},
        "history": [{"epoch": 2, "loss": 0.65}],
    },
    "sae": {
        "fvu_test": 0.5797,
        "pca_fvu_test": 0.6208,
        "dead_fraction": 0.0,
        "ae": {"fvu_dev": 0.6095, "best_epoch": 909},
        "ranking": {"sae": {"ndcg@10": {"mean": 0.0271, "lo": 0.0186, "hi": 0.0365}}},
        "a_figure_added_later": 3,
    },
    "report": {
        "table3": {"sae": {"intra": 0.2554, "inter": 0.1003, "n_latents": 2}},
        "figure5": {"sae_levels": {"levels": [1, 2], "hit_ratio": [0.0, float("nan")],
                                   "n": [6, 3], "global": 0.11875}},  # fmt: skip
        "table8": {"scales": [-10.0, 1.0, 10.0], "related": [0.26, 0.35, 0.5], "mode": "replace"},
    },
    "timings": {"prepare": 0.5, "publish": float("nan")},
}


def test_an_old_column_reads_by_attribute() -> None:
    m = RunMetrics.from_column(OLD_COLUMN)
    assert m.recommender.test_ci["ndcg@10"].mean == 0.0276
    assert m.sae.ae.best_epoch == 909
    assert m.sae.ranking["sae"]["ndcg@10"].hi == 0.0365
    assert m.report.table3["sae"].n_latents == 2
    assert m.report.figure5["sae_levels"].global_rate == 0.11875  # "global" is a keyword
    assert isinstance(m.report.table8, TuningSummary) and m.report.table8.mode == "replace"
    assert m.report.table6 == {} and m.report.sweep is None  # not computed then: empty, no error


def test_non_finite_numbers_read_as_none_at_any_depth() -> None:
    m = RunMetrics.from_column(OLD_COLUMN)
    assert m.report.figure5["sae_levels"].hit_ratio == [0.0, None]
    assert m.timings["publish"] is None


def test_keys_no_model_names_survive_a_round_trip() -> None:
    m = RunMetrics.from_column(OLD_COLUMN)
    assert m.sae.model_extra == {"a_figure_added_later": 3}
    out = m.to_json()
    assert out["sae"]["a_figure_added_later"] == 3
    assert out["report"]["figure5"]["sae_levels"]["global"] == 0.11875

    def same(a: object, b: object) -> bool:  # every input value is in the output
        if isinstance(a, dict):
            return isinstance(b, dict) and all(same(v, b.get(k)) for k, v in a.items())
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
        if isinstance(a, float) and math.isnan(a):
            return b is None
        return a == b

    assert same(OLD_COLUMN, out)


def test_an_empty_or_missing_column_is_an_empty_report() -> None:
    for column in (None, {}):
        m = RunMetrics.from_column(column)
        assert m.sae.fvu_test is None and m.report.table4 == {}
