"""What a reader meets in the browser at 1,280 px (docs/architecture.md, pages): the run report
has no horizontal overflow (the human-evaluation table included), no plotly legend over the
plot area, and its "Other metrics" and configuration show labelled figures, never raw keys,
long lists or filesystem paths."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.serve import background_server
from core import studies
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.accounts import create_account
from tests.backend.factories import fixture_rows
from tests.backend.test_report import real_metrics
from tests.e2e.conftest import guarded_page

pytestmark = pytest.mark.browser

RAW_KEY = re.compile(r"[a-z_]+ \[\d+ values\]|\bedges\b|\bcounts\b")
LONG_STUDY = "A study whose name is long enough to widen the table's first column " * 2


def _metrics() -> dict[str, Any]:
    m = real_metrics()
    m["recommender"]["threads"] = [16] * 51  # per-epoch series the worker writes
    m["sae"]["n_heldout_users"] = 0  # every user trained the SAE: no held-out row
    m["sae"].pop("ranking_heldout", None)
    m["report"]["figure2_llm"] = {
        "sae": {"edges": [i / 10 for i in range(11)], "counts": [1] * 10, "n_unverified": 0}
    }
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("layout")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    rows = fixture_rows(run_id="real")
    rows["run"]["metrics"] = _metrics()
    rows["run"]["config"] |= {"dataset_path": "/home/someone/data/ml", "sae_scale": 0}
    publish_run(sessions, **rows)
    rater = create_account(sessions, "annotator", "layout-rater")
    study = studies.create_study(
        sessions, "real", LONG_STUDY.strip()[:128], size=3, min_confidence=0.0,
        methods="tfidf", annotators=["layout-rater"],
    )  # fmt: skip
    for position in range(3):
        studies.rate_at(sessions, study, rater.id, position, 3)
    studies.set_status(sessions, study, "closed")
    with background_server(settings) as base:
        yield base


# Every plotly figure: its legend's box and its plot area's box (read back from the page).
BOXES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(div => {
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
    return {l: r.left, r: r.right, t: r.top, b: r.bottom}; };
  return {id: div.id, legend: box(div.querySelector('g.legend')),
          plot: box(div.querySelector('.nsewdrag'))};
})"""


def test_report_fits_1280_legends_outside_no_raw_keys(browser, server: str) -> None:  # type: ignore[no-untyped-def]
    with guarded_page(browser, server) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto("/runs/real")
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"the report is {width} px wide in a 1,280 px window"
        assert "layout-rater" not in page.inner_text("#human")  # the study is in the table
        assert "A study whose name" in page.inner_text("#human")

        figures = page.evaluate(BOXES)
        with_legend = [f for f in figures if f["legend"]]
        assert len(with_legend) >= 4, figures
        for f in with_legend:
            lg, pl = f["legend"], f["plot"]
            overlap = (
                lg["l"] < pl["r"] and pl["l"] < lg["r"] and lg["t"] < pl["b"] and pl["t"] < lg["b"]
            )
            assert not overlap, f"{f['id']}: legend {lg} over the plot area {pl}"

        page.click("details.config summary")
        text = page.inner_text("main")
        tail = text[text.index("Other metrics") :]
        assert not RAW_KEY.search(tail), RAW_KEY.search(tail)
        assert "longer series" in tail, tail[:300]
        assert "/home/someone" not in tail and "dataset path" not in tail
        assert "SAE scale 0" not in tail and "chosen by the worker" in tail
        t7 = page.inner_text("#table7")
        assert "held-out users" not in t7 and "users whose vectors trained the SAE" in t7
        assert page.locator("#fig-figure2-llm").count() == 1
