"""The verdict in the browser (docs/method.md §1.11): a latent whose null does not reject has
another badge than a verified one, the verdict filter keeps the verified alone, and a web
explanation that names nothing stays in the history without becoming the current concept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import add_concept, publish_run, summary_values
from tests.backend.factories import fixture_rows
from tests.e2e.conftest import guarded_page

# latent 0: 0.9 and its null rejects (p = 1/20 over 19 draws); latent 2: 0.9, p = 0.3
NULLS = {0: {"p": 0.05, "n": 19, "p95": 0.7}, 2: {"p": 0.3, "n": 19, "p95": 0.95}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("verdicts")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    rows: dict[str, Any] = fixture_rows()
    by_latent = {}
    for concept in rows["concepts"]:
        if concept["method"] == "llm" and concept["latent_idx"] in NULLS:
            concept["confidence"] = 0.9
            concept["details"] = {"null": NULLS[concept["latent_idx"]]}
            by_latent[concept["latent_idx"]] = concept
    for latent in rows["latents"]:  # the summary as publish writes it (worker/stages/publish.py)
        c = by_latent.get(latent["idx"])
        if c is not None:
            latent |= summary_values("llm", c["confidence"], c["text"], c["details"])
    sessions = session_factory(settings.resolved_database_url)
    publish_run(sessions, **rows)
    # a web explanation of latent 1 (no LLM concept yet) that named nothing, twice
    rejected = [{"text": "the movie", "reason": "fits any latent"}] * 2
    add_concept(
        sessions,
        {
            "run_id": "fixture", "latent_idx": 1, "method": "llm", "text": "the movie",
            "confidence": None, "status": "degenerate", "model": "scripted",
            "details": {"rejected": rejected, "reason": "it names nothing"},
        },
    )  # fmt: skip
    with background_server(settings) as base:
        yield base


def test_badges_filter_and_a_degenerate_explanation(browser: object, server: str) -> None:
    with guarded_page(browser, server) as page:
        page.goto("/runs/fixture/latents?method=llm&_size=100")
        verified = page.locator('tr:has(a[href="/runs/fixture/latents/0"]) [data-verdict]')
        over_null = page.locator('tr:has(a[href="/runs/fixture/latents/2"]) [data-verdict]')
        assert verified.get_attribute("data-verdict") == "verified"
        assert over_null.get_attribute("data-verdict") == "not_over_null"
        # the same 0.90, two badges: colour and words follow the verdict, not the confidence
        assert verified.inner_text().startswith("0.90") and over_null.inner_text().startswith(
            "0.90"
        )
        assert verified.evaluate("e => getComputedStyle(e).backgroundColor") != over_null.evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        assert (
            "not verified over null"
            in page.locator('tr:has(a[href="/runs/fixture/latents/2"])').inner_text()
        )
        page.select_option('select[name="verified"]', "true")
        page.click('#latent-filters button[type="submit"]')
        page.wait_for_function(
            "() => document.querySelectorAll('table.latents tbody tr').length === 1"
        )
        rows = page.locator("table.latents tbody tr")
        assert rows.count() == 1 and "#0" in rows.first.inner_text()

        page.goto("/runs/fixture/latents/1")
        card = page.locator('.concept-card[data-method="llm"]')
        assert card.locator(".concept-text").count() == 0  # no current LLM concept
        assert "degenerate" in card.inner_text() and "kept in the history" in card.inner_text()
        history = page.locator("section.history tbody tr").first.inner_text()
        assert "the movie" in history and "degenerate" in history
        page.goto("/runs/fixture/latents?method=llm&_size=100")
        assert page.locator('a[href="/runs/fixture/latents/1"]').count() == 0
