"""benchmarks/pipeline.py's per-model keys of docs/method.md §1.7, §1.9, §1.11 (the names are
the contract): read from a report.json as evaluate writes it."""

from __future__ import annotations

from benchmarks.pipeline import verification_figures


def test_the_verification_keys_come_from_the_report() -> None:
    report = {
        "case_sets": {"overlap_users": 0, "evaluation_users": 203},
        "null": {
            "tfidf": {"sae": {"null_n_min": 19, "verified": 12, "confident": 40}},
            "llm": {"sae": {"null_n_min": 24}},
        },
        "table8": {"scales": [-10.0, 1.0, 10.0], "related_share": [0.2, 0.3, 0.5]},
        "output_check": {
            "sae": {"verified": 12, "verified_confirmed": 3, "confirmed_share": 0.25},
            "base": {"verified": 2, "verified_confirmed": 1, "confirmed_share": 0.5},
        },
    }
    f = verification_figures(report)
    assert f["case_overlap_users"] == 0 and f["null_n_min"] == 19
    assert f["verified_tfidf"] == 12 and f["table8_related_gain"] == 0.5 - 0.2
    assert f["output_confirmed_share"] == 0.25 and f["output_confirmed_share_base"] == 0.5
    empty = verification_figures({})
    assert empty["output_confirmed_share"] is None is empty["output_confirmed_share_base"]
