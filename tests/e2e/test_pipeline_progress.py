"""The home page follows a pipeline in Debian's chromium (docs/architecture.md, progress): the
stage and k of n from the run's progress file, updated in place as the stage changes, then the
run in the table once its first version is published, with no reload. The progress file is
written by the worker's own tracker (core/progress.py); the run is the factory run."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.serve import background_server
from core.progress import ProgressTracker, Step
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.factories import publish_fixture
from tests.e2e.conftest import guarded_page
from tests.e2e.test_axe import _serious

pytestmark = pytest.mark.browser

PLAN = [Step(stage=s) for s in ("prepare", "train_sae", "interpret")] + [
    Step(stage="publish", part="TF-IDF concepts"),
    Step(stage="explain_llm", part="LLM labels"),
    Step(stage="publish", part="LLM labels"),
]


def test_the_home_page_shows_the_stage_then_the_published_run(
    browser: object, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    tracker = ProgressTracker(tmp_path, "fixture", PLAN)
    tracker.end("prepare", 2.0)
    tracker.begin("train_sae")
    with background_server(settings) as base, guarded_page(browser, base) as pg:
        assert _serious(pg, "/") == []  # the progress section too (axe-core)
        pg.goto("/")
        pg.evaluate("() => { window.__notReloaded = true; }")
        item = pg.locator('li[data-progress-run="fixture"]')
        assert "stage 2 of 6: train_sae" in item.inner_text()
        assert "not published yet" in item.inner_text()
        bar = pg.get_by_role("progressbar", name="fixture: 1 of 6 stages done")
        assert bar.get_attribute("value") == "1"
        assert pg.get_by_role("status").count() == 1
        assert "No run is published yet" in pg.locator("#runs-live").inner_text()

        tracker.end("train_sae", 3.0)
        tracker.begin("interpret")  # the page's poll picks it up
        pg.get_by_text("stage 3 of 6: interpret").wait_for()

        tracker.end("interpret", 1.0)
        tracker.begin("publish")
        publish_fixture(session_factory(settings.resolved_database_url))
        tracker.end("publish", 1.0)
        tracker.begin("explain_llm")  # the LLM pass runs; the first version is there
        pg.locator('tr[data-run="fixture"]').wait_for()
        assert "version 1 is published" in item.inner_text()
        assert "stage 5 of 6: explain_llm (LLM labels)" in item.inner_text()

        tracker.end("explain_llm", 1.0)
        tracker.begin("publish")
        tracker.end("publish", 1.0)  # all done: the progress goes, the run stays
        item.wait_for(state="detached")
        assert pg.locator('tr[data-run="fixture"] a', has_text="fixture").count() == 1
        assert pg.evaluate("() => window.__notReloaded") is True
