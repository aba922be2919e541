"""The output check in the browser (docs/method.md §1.9, "Output check"): the latent list's
output column and filter (the form, with and without its script) and the latent page's sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import publish_run, summary_values
from tests.backend.factories import fixture_rows
from tests.e2e.conftest import guarded_page

CONFIRMED = {
    "verdict": "confirmed", "mode": "active", "n_users": 143, "n_active": 143, "scale": 5.0,
    "share_before": 0.12, "share_boosted": 0.31, "share_suppressed": 0.04,
    "boosted_change": 0.19, "boosted_ci": [0.12, 0.26],
    "suppressed_change": -0.08, "suppressed_ci": [-0.10, -0.06],
}  # fmt: skip
# latent 5 'horror' confirmed, 0 'horror' refuted (TF-IDF); every other latent not checked
CHECKS = {5: CONFIRMED, 0: CONFIRMED | {"verdict": "refuted"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("output")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    rows: dict[str, Any] = fixture_rows()
    for concept in rows["concepts"]:  # as publish writes them (worker/stages/publish.py)
        if concept["method"] == "tfidf" and concept["latent_idx"] in CHECKS:
            concept["output"] = CHECKS[concept["latent_idx"]]
    for latent in rows["latents"]:
        if latent["idx"] in CHECKS:
            latent |= summary_values(
                "tfidf", latent["tfidf_confidence"], latent["tfidf_concept"], {},
                CHECKS[latent["idx"]],
            )  # fmt: skip
    publish_run(session_factory(settings.resolved_database_url), **rows)
    with background_server(settings) as base:
        yield base


def test_output_column_filter_and_sentence(browser: object, server: str) -> None:
    with guarded_page(browser, server) as page:
        page.goto("/runs/fixture/latents?_size=100")
        cell = page.locator('tr:has(a[href="/runs/fixture/latents/5"]) .output')
        assert cell.inner_text() == "confirmed"
        refuted = page.locator('tr:has(a[href="/runs/fixture/latents/0"]) .output')
        assert refuted.inner_text() == "refuted"
        assert cell.evaluate("e => getComputedStyle(e).color") != refuted.evaluate(
            "e => getComputedStyle(e).color"
        )
        page.select_option('select[name="output"]', "confirmed")
        page.click('#latent-filters button[type="submit"]')
        page.wait_for_function(
            "() => document.querySelectorAll('table.latents tbody tr').length === 1"
        )
        assert "#5" in page.locator("table.latents tbody tr").first.inner_text()

        page.goto("/runs/fixture/latents/5")
        sentence = page.locator('.concept-card[data-method="tfidf"] .output-check').inner_text()
        assert "from 12% to 31%" in sentence and "confirmed on output (n = 143" in sentence
        page.goto("/runs/fixture/latents/6")
        unchecked = page.locator('.concept-card[data-method="tfidf"] .output-check').inner_text()
        assert unchecked.startswith("not checked on output")


def test_the_filter_works_without_script(browser: object, server: str) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(base_url=server, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/runs/fixture/latents?_size=100")
        page.select_option('select[name="output"]', "refuted")
        page.click('#latent-filters button[type="submit"]')
        page.wait_for_url("**output=refuted**")
        rows = page.locator("table.latents tbody tr")
        assert rows.count() == 1 and "#0" in rows.first.inner_text()
    finally:
        context.close()
