"""The run report (`/runs/{run}`) and the index row on metrics of the worker's real shape,
beside the paper's MovieLens-1M numbers; plus the sensitivity-sweep stage (worker/sweep.py)."""

from __future__ import annotations

import html as html_lib
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend import paper
from backend.app import create_app
from backend.deps import fmt, pct
from backend.numbers import duration
from backend.report import leftover
from core.reports import (
    ConceptCounts,
    ConfidenceHistogram,
    CoverageSubset,
    DenseAEReport,
    FeatureCoverage,
    HitRatioByLevel,
    Interval,
    NullSummary,
    PaperReport,
    RecommenderReport,
    RunMetrics,
    SAEReport,
    Similarity,
    SweepRow,
    TuningSummary,
)
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.conftest import make_settings
from tests.backend.factories import fixture_rows

HTML = {"accept": "text/html"}
LEVELS = list(range(1, 11))


def ci(mean: float, half: float = 0.005) -> Interval:
    return Interval(mean=mean, lo=mean - half, hi=mean + half)


def ranking_row(n10: float, h10: float, n20: float, h20: float) -> dict[str, Interval]:
    return {"ndcg@10": ci(n10), "hr@10": ci(h10), "ndcg@20": ci(n20), "hr@20": ci(h20)}


def _counts(verified: int, concepts: int, all_: int, concepts_all: int) -> ConceptCounts:
    return ConceptCounts(
        latents_verified=verified,
        concepts_verified=concepts,
        latents_all=all_,
        concepts_all=concepts_all,
    )


def _paper_report(table7: dict[str, dict[str, Interval]]) -> PaperReport:
    """report.json of a SASRec run (NaN where the worker computed nothing, as it may write)."""
    edges = [i / 10 for i in range(11)]
    return PaperReport(
        table3={
            "sae": Similarity(intra=0.6123, inter=0.1789, n_latents=37),
            "base": Similarity(intra=math.nan, inter=None, n_latents=0),
        },
        table4={"sae": _counts(37, 21, 911, 301), "base": _counts(0, 0, 64, 33)},
        table4_llm={"sae": _counts(95, 77, 1000, 640), "base": _counts(3, 3, 64, 60)},
        figure2={
            "sae": ConfidenceHistogram(
                edges=edges, counts=[0, 1, 2, 3, 5, 8, 13, 21, 34, 55], n_unverified=113
            ),
            "base": ConfidenceHistogram(
                edges=edges, counts=[0, 0, 1, 4, 9, 30, 15, 5, 0, 0], n_unverified=0
            ),
        },
        figure5={
            "sae_levels": HitRatioByLevel(
                levels=LEVELS, n=[10] * 10, hit_ratio=[i / 20 for i in LEVELS], global_rate=0.0377
            ),
            "sae_pooled_levels": HitRatioByLevel(
                levels=LEVELS,
                n=[10] * 10,
                hit_ratio=[None] * 5 + [i / 25 for i in range(5)],
                global_rate=0.0377,
            ),
            "base_levels": HitRatioByLevel(
                levels=LEVELS, n=[10] * 10, hit_ratio=[math.nan] * 10, global_rate=math.nan
            ),
            "base_pooled_levels": HitRatioByLevel(
                levels=LEVELS, n=[10] * 10, hit_ratio=[None] * 10, global_rate=None
            ),
        },
        table6={
            "genres": FeatureCoverage(
                all=CoverageSubset(
                    n_features=19, n_covered=12, coverage=12 / 19, covered=["horror", "western"]
                ),
                single_term=CoverageSubset(
                    n_features=18, n_covered=11, coverage=11 / 18, covered=["horror"]
                ),
                no_token=[],
            ),
            "tags": FeatureCoverage(
                all=CoverageSubset(n_features=1161, n_covered=0, coverage=0.0, covered=[]),
                single_term=CoverageSubset(n_features=656, n_covered=0, coverage=0.0, covered=[]),
                no_token=["l.a.", "made me cry"],
            ),
        },
        table7=table7,
        null={
            "tfidf": {
                "sae": NullSummary(
                    confident=37,
                    verified=19,
                    with_confidence=640,
                    with_null=640,
                    null_n_min=1270,
                    null_p95_mean=0.72,
                    null_p95_median=0.7125,
                    margin_median=0.0315,
                ),
                "base": NullSummary(confident=0, verified=0, with_confidence=50, with_null=50),
            },
            "llm": {"sae": NullSummary(confident=95, verified=41, with_confidence=300)},
        },  # fmt: skip
        table8=TuningSummary(
            scales=[-10, -5, -1, 0, 1, 5, 10],
            related=[0.051, 0.1, 0.2, 0.3, 0.402, 0.5, 0.533],
            other=[0.021, 0.022, 0.023, 0.024, 0.026, 0.027, 0.028],
            related_share=[0.0134, 0.05, 0.1, 0.15, 0.2461, 0.3, 0.3579],
            other_share=[0.011, 0.012, 0.013, 0.014, 0.0155, 0.016, 0.017],
            n_latents=29,
            mode="replace",
        ),
        sweep=[
            SweepRow(
                scale=s,
                k=k,
                n_latents=64 * s,
                fvu_test=0.5 / k + 0.01 * s,
                pca_fvu_test=0.6 / k,
                dead_fraction=0.01 * s,
            )
            for s in (8, 16, 32)
            for k in (4, 8, 16)
        ],
        table9_new={"widgets": 4242},  # a table a later stage adds
    )


def real_metrics() -> dict[str, Any]:
    """Run.metrics as the worker publishes it (core.reports; a SASRec run, a sweep, Table 8)."""
    table7 = {
        "mostpop": ranking_row(0.02347, 0.04493, 0.03138, 0.07654),
        "base": ranking_row(0.05412, 0.10317, 0.06755, 0.15642),
        "sae": ranking_row(0.04871, 0.09983, 0.06123, 0.14811),
        "random_sae": ranking_row(0.03011, 0.06112, 0.04001, 0.09333),
        "ae": ranking_row(0.02953, 0.06156, 0.04421, 0.11981),
    }
    metrics = RunMetrics(
        dataset={"users": 601, "items": 1955, "interactions": 41227, "kcore_rounds": 4},
        recommender=RecommenderReport(
            name="sasrec",
            test={k: v.mean for k, v in table7["base"].items()},
            test_ci=table7["base"],
            mostpop_test_ci=table7["mostpop"],
            dev={"ndcg@10": 0.0612},
            best_epoch=91,
            epochs_run=100,
            train_seconds=321.5,
            config={"emb": 64, "layers": 1},
        ),
        sae=SAEReport(
            fvu_train=0.1234,
            fvu_dev=0.1876,
            fvu_test=0.1911,
            pca_fvu_test=0.4217,
            random_sae_fvu_test=0.8365,
            ae_fvu_test=0.5123,
            ae=DenseAEReport(fvu_train=0.5011, fvu_dev=0.5077, best_epoch=900, epochs=950),
            dead_fraction=0.1328125,
            l0=8.0,
            n_latents=1024,
            vectors_per_second=25123.4,
            train_seconds=12.5,
            best_epoch=40,
            epochs=70,
            steps=9999,  # a field no report table shows: shown at the bottom
            config={"scale": 16, "k": 8, "seed": 0},
            ranking=table7,
            ranking_paired={
                "sae": {
                    "metric": "ndcg@10",
                    "n": 601,
                    "seed": 0,
                    "diff": {"mean": -0.00541, "lo": -0.0081, "hi": -0.0027},
                    "retained": {"mean": 0.9, "lo": 0.851, "hi": 0.949},
                }
            },  # fmt: skip
        ),
        report=_paper_report(table7),
        timings={"prepare": 1.5, "train_recommender": 300.25, "evaluate": 2.25},
        probe_extra={"positions": 17},  # an unknown top-level section
    ).to_json()
    # A publisher that let a NaN through (JSON columns may hold one): the page must cope.
    metrics["report"]["table3"]["base"]["intra"] = math.nan
    metrics["report"]["figure5"]["base_levels"]["hit_ratio"] = [math.nan] * 10
    return metrics


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("report"))
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    rows = fixture_rows(run_id="real")
    rows["run"]["metrics"] = real_metrics()
    publish_run(sessions, **rows)
    bare = fixture_rows(run_id="bare")
    bare["run"] |= {"recommender": "itemknn", "metrics": {"dataset": {"users": 8}}}
    publish_run(sessions, **bare)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def page_html(client: TestClient) -> str:
    response = client.get("/runs/real", headers=HTML)
    assert response.status_code == 200, response.text[:500]
    return html_lib.unescape(response.text)


def section(html: str, anchor: str) -> str:
    """The HTML of ``<section id="anchor">`` (so a number is checked in the right table)."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def plain(html: str) -> str:
    """Text without tags, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_table7_shows_ours_with_ci_and_retention_and_the_papers(page_html: str) -> None:
    t7 = plain(section(page_html, "table7"))
    for label in ("MostPop", "Base model", "SAE (x → x̂)", "Random SAE", "Dense AE (8)"):
        assert label in t7
    assert "0.05412 [0.0491, 0.0591]" in t7  # base NDCG@10 with its CI
    assert "0.04871" in t7 and "90.0%" in t7  # SAE and 0.04871 / 0.05412 retained
    assert "0.1049" in t7 and "0.0973" in t7 and "92.8%" in t7  # paper, SASRec, MovieLens-1M
    assert "Table 7, §6, MovieLens-1M" in t7
    # paired over the same users (docs/method.md §1.9): the difference and % of base, with CIs
    assert "Table 7 paired" in t7 and "601" in t7
    assert "-0.00541 [-0.0081, -0.0027]" in t7 and "0.9 [0.851, 0.949]" in t7


def test_reconstruction_compares_with_baselines(page_html: str) -> None:
    rec = plain(section(page_html, "reconstruction"))
    for number in ("0.1911", "0.4217", "0.8365", "0.5123", "0.5011", "13.3%", "25,123.40"):
        assert number in rec, number
    assert "PCA-8" in rec and "40 / 70" in rec


def test_table3_null_renders_as_dash_with_why(page_html: str) -> None:
    t3 = section(page_html, "table3")
    assert "0.6123" in t3 and "0.1789" in t3
    assert (
        t3.count('title="no Base dimension is verified (confidence ≥ 0.8, null p ≤ 0.05)">—') == 2
    )
    assert "0.698" in t3 and "0.4452" in t3 and "0.1745" in t3  # paper, SASRec


def test_table4_shows_tfidf_and_llm_and_the_papers(page_html: str) -> None:
    t4 = section(page_html, "table4")
    assert "TF-IDF · SAE" in t4 and "LLM · SAE" in t4
    for number in ("37", "911", "21", "301", "95", "640"):
        assert f">{number}<" in t4, number
    for number in ("53", "508", "111", "970"):  # paper, SASRec, MovieLens-1M
        assert f">{number}<" in t4, number


def test_table4_section_shows_how_many_stay_verified_under_the_null(page_html: str) -> None:
    """Issue 9 (docs/method.md §1.11): per method, confidence >= 0.8 vs also above the null."""
    t4 = section(page_html, "table4")
    assert "Verified under the null" in t4 and "verified (also null p ≤ 0.05)" in t4
    row = re.search(
        r"<th scope=\"row\">TF-IDF · SAE</th>(.*?)</tr>", t4.split("Verified under")[1], re.S
    )
    assert row, t4
    cells = [plain(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)]
    assert cells[:4] == ["640", "37", "19", "1,270"] and cells[4].startswith("0.71")
    assert 'title="TF-IDF only">—' in t4  # the LLM has no term margin


def test_table8_puts_the_item_share_first(page_html: str) -> None:
    """Issue 9: the paper's "ratio of items related to the concept" is Table 8's headline."""
    t8 = section(page_html, "table8")
    labels = re.findall(r'<th scope="row">(.*?)</th>', t8)
    assert labels[0] == "related concept · share of top-10 items"
    assert labels[2].startswith("related concept · cases")
    assert t8.index("1.3%") < t8.index("5.1%") and "35.8%" in t8


def test_table6_coverage_with_collapsible_lists(page_html: str) -> None:
    t6 = section(page_html, "table6")
    assert "63.2%" in t6 and "16 (89%)" in t6 and "109 (20%)" in t6  # ours; paper SASRec
    assert re.search(r"<details class=\"covered\">\s*<summary>genres \(all\): 2</summary>", t6)
    assert '<span class="tag">western</span>' in t6 and "made me cry" in t6


def test_table8_at_the_papers_scales_and_the_curve(page_html: str) -> None:
    t8 = section(page_html, "table8")
    assert "−10×" in t8 and "+10×" in t8 and "mean over 29 latents" in t8
    for number in ("5.1%", "40.2%", "53.3%", "2.1%", "2.8%"):
        assert number in t8, number
    for number in ("3.8%", "35.7%", "47.5%", "2.4%", "2.9%", "2.7%"):  # paper
        assert number in t8, number
    assert 'id="fig-table8"' in t8


def test_figures_and_null_series(page_html: str) -> None:
    assert 'id="fig-figure2"' in page_html and 'id="fig-confidence"' in page_html
    f5 = section(page_html, "figure5")
    assert 'id="fig-figure5-sae"' in f5 and 'id="fig-figure5-base"' not in f5
    assert "No data for this figure." in f5 and "0.0377" in f5 and "0.043" in f5
    sweep = section(page_html, "sweep")
    for fig in ("fig-sweep-fvu-scale", "fig-sweep-fvu-k", "fig-sweep-dead-scale"):
        assert f'id="{fig}"' in sweep


def test_dataset_note_timings_and_unknown_keys(page_html: str) -> None:
    note = re.search(r'<p class="paper-note"[^>]*>(.*?)</p>', page_html, re.S)
    assert note and "MovieLens-1M" in note.group(1) and "tiny-movies" in note.group(1)
    assert "datasets differ" in note.group(1)
    data = section(page_html, "run-data")
    assert "41,227" in data and "5 min 4 s" in data  # total of the stage timings, as a duration
    other = page_html.split('id="other-metrics"', 1)[1]
    for key in ("table9_new", "4,242", "probe_extra", "steps", "9,999"):
        assert key in other, key
    assert "fvu_test" not in other  # shown above, not twice


def test_json_twin_carries_every_number_the_page_shows(client: TestClient, page_html: str) -> None:
    ctx = client.get("/runs/real.json").json()
    t7 = ctx["report"]["table7"]
    assert t7["rows"][1]["cells"][0] == {
        "value": 0.05412,
        "kind": "num",
        "lo": pytest.approx(0.04912),
        "hi": pytest.approx(0.05912),
    }
    assert ctx["report"]["table3"]["rows"][1]["cells"][0] == {
        "value": None,
        "kind": "num",
        "why": "no Base dimension is verified (confidence ≥ 0.8, null p ≤ 0.05)",
    }
    assert ctx["report"]["table8"]["paper"]["rows"][0]["cells"][1]["value"] == 0.357
    tables = [t for t in ctx["report"].values() if isinstance(t, dict) and "rows" in t]
    tables += [t["paper"] for t in tables if "paper" in t] + ctx["report"]["reconstruction"]
    assert len(tables) >= 12
    shown = 0
    for t in tables:
        for row in t["rows"]:
            assert row["label"] in page_html, row["label"]
            for c in row["cells"]:
                if c["value"] is None:
                    assert f'title="{c["why"]}">—' in page_html
                else:
                    show = {"pct": pct, "seconds": duration}.get(c["kind"], fmt)
                    text = show(c["value"])
                    assert text in page_html, (t["title"], row["label"], text)
                    shown += 1
    assert shown > 100


def test_index_row_has_the_headline(client: TestClient) -> None:
    html = html_lib.unescape(client.get("/", headers=HTML).text)
    row = re.search(r'<tr data-run="real"[^>]*>(.*?)</tr>', html, re.S)
    assert row, "no row for the run"
    cells = [plain(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)]
    # The run's model, dataset and date sit under its id (the table fits 1400 px, issue 11).
    assert cells[:2] == [
        "real sasrec on tiny-movies · 2026-01-01 latents · users · movies · steer",
        "20 (4)",
    ]
    assert cells[2] == "0.05412 [0.0491, 0.0591]"
    assert cells[3] == "0.04871 (90.0%)"
    assert cells[4] == "0.02347"
    assert cells[5] == "0.1911 (0.4217)"
    assert cells[6] == "13.3%"
    assert cells[7] == "TF-IDF: 37 (21) LLM: 95 (77)"
    assert cells[8] == "-10×: 1.3% 1×: 24.6% +10×: 35.8%"  # Table 8's headline: the item share
    assert 'href="/runs/real/latents"' in row[1]
    assert 'href="/runs/real/users/0"' in row[1]  # a user to steer, one click from the index
    headline = next(r for r in client.get("/index.json").json()["runs"] if r["id"] == "real")[
        "headline"
    ]
    assert headline["sae_retained"] == pytest.approx(0.04871 / 0.05412)
    assert headline["table8"] == {
        "scales": [-10, 1, 10],
        "related": [0.051, 0.402, 0.533],
        "other": [0.021, 0.026, 0.028],
        "related_share": [0.0134, 0.2461, 0.3579],
        "other_share": [0.011, 0.0155, 0.017],
    }


def test_run_without_a_report_and_unknown_recommender(client: TestClient) -> None:
    html = html_lib.unescape(client.get("/runs/bare", headers=HTML).text)
    assert "the worker has not evaluated the ranking yet" in html
    assert "the paper does not study 'itemknn'" in html
    assert "This run has no sensitivity sweep" in html
    home = client.get("/", headers=HTML).text
    row = re.search(r'<tr data-run="bare"[^>]*>(.*?)</tr>', home, re.S)
    assert row and 'title="not evaluated yet">—' in row[1]
    assert 'title="no targeted tuning in this run">—' in row[1]


def test_paper_numbers_are_per_model_and_never_borrowed_silently() -> None:
    bprmf = paper.for_recommender("BPRMF")
    assert bprmf["table7"]["values"]["sae"]["ndcg@10"] == 0.0355
    assert bprmf["table3"]["values"]["base"]["inter"] == 0.4740
    assert bprmf["table8"]["model"] == "sasrec" and "SASRec only" in bprmf["table8"]["note"]
    assert paper.for_recommender("lightgcn")["table6"]["values"] is None
    assert paper.for_recommender("timirec")["table4"]["values"]["llm"]["sae"]["verified"] == 81
    unknown = paper.for_recommender("gru4rec")
    assert not unknown["known"] and unknown["table7"]["values"] is None


def test_leftover_keeps_only_what_the_report_does_not_show() -> None:
    m = RunMetrics.from_column(real_metrics())
    assert leftover(m) == {
        "sae": {"steps": 9999},
        "report": {"table9_new": {"widgets": 4242}},
        "probe_extra": {"positions": 17},
    }


# --- worker/sweep.py -------------------------------------------------------------------------


def test_sensitivity_sweep_rows_are_json_and_seeded() -> None:
    from worker.sae.train import SAEConfig
    from worker.sweep import sensitivity_sweep

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(6, 8))
    x_train, x_dev, x_test = (
        np.abs(rng.normal(size=(n, 6))) @ basis for n in (120, 30, 30)
    )  # fmt: skip
    fast = SAEConfig(lr=3e-3, batch_size=64, max_epochs=3, patience=3, seed=123)
    rows = sensitivity_sweep(x_train, x_dev, x_test, scales=(1, 2), ks=(2, 4), base_config=fast)
    assert [(r["scale"], r["k"], r["n_latents"]) for r in rows] == [
        (1, 2, 8),
        (1, 4, 8),
        (2, 2, 16),
        (2, 4, 16),
    ]
    json.dumps(rows, allow_nan=False)
    for row in rows:
        assert all(type(v) in (int, float) or v is None for v in row.values()), row
        assert 0.0 <= row["dead_fraction"] <= 1.0 and row["fvu_test"] >= 0.0
    again = sensitivity_sweep(x_train, x_dev, x_test, scales=(1, 2), ks=(2, 4), base_config=fast)
    drop = {"vectors_per_second"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in again] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows
    ]
    other_seed = sensitivity_sweep(x_train, x_dev, x_test, (1,), (2,), seed=1, base_config=fast)
    assert other_seed[0]["fvu_train"] != rows[0]["fvu_train"]
    with pytest.raises(ValueError, match="k must be at most d = 8"):
        sensitivity_sweep(x_train, x_dev, x_test, scales=(1,), ks=(16,), base_config=fast)
