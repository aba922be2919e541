"""Live steering in a real browser: uvicorn subprocess + Debian chromium.

The factory run of ``conftest.live_settings`` has no artifacts, so this module serves its own
synthetic run (``tests.backend.synthetic_run.make_run``) on its own server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import guarded_page, synthetic_server

pytestmark = pytest.mark.browser
RUN = "steer-e2e"


@pytest.fixture(scope="module")
def steer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with synthetic_server(tmp_path_factory.mktemp("steer-live"), RUN) as base:
        yield base


@pytest.fixture
def steer_page(browser: object, steer_server: str) -> Iterator[object]:
    with guarded_page(browser, steer_server) as pg:
        yield pg


def _list(pg: object) -> list[str]:
    return pg.locator("#steered-list li").evaluate_all(  # type: ignore[attr-defined]
        "els => els.map(e => e.dataset.idx)"
    )


def test_slider_reranks_without_reload(steer_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = steer_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN}/users/0")
    before = _list(pg)
    assert len(before) == 10
    expect(pg.locator("#steer-diff")).to_have_count(0)
    pg.evaluate("window.__noReload = true")  # survives only if the page is not reloaded

    slider = pg.locator(".slider-row input[type=range]").first
    slider.fill("-10")  # fires input + change, like a drag to the left end
    expect(pg.locator("#steer-diff")).to_be_visible()
    after = _list(pg)
    assert after != before
    assert pg.evaluate("window.__noReload") is True
    expect(pg.locator("#steer-edits")).to_contain_text("scale")
    latent = pg.locator(".slider-row").first.get_attribute("data-latent")
    assert re.search(rf"_edits={latent}(%3A|:)-10", pg.url), pg.url

    # The URL is shareable: a fresh load renders the same steered list server-side.
    pg.goto(pg.url)
    assert _list(pg) == after
    expect(pg.locator(".slider-row").first).to_have_class(re.compile("edited"))

    pg.click("#steer-reset")
    expect(pg.locator("#steer-diff")).to_have_count(0)
    assert _list(pg) == before
    assert "_edits" not in pg.url


def test_search_adds_a_latent_and_mode_switch(steer_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = steer_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN}/users/1")
    n_rows = pg.locator(".slider-row").count()
    pg.fill("#latent-search", "a")  # matches most genre concepts
    add = pg.locator("#latent-search-results li", has_not_text="active").first.locator("button")
    add.click()
    expect(pg.locator(".slider-row")).to_have_count(n_rows + 1)
    before = _list(pg)
    new_slider = pg.locator(".slider-row").last.locator("input[type=range]")
    new_slider.fill(new_slider.get_attribute("max") or "1")
    expect(pg.locator("#steer-diff")).to_be_visible()
    assert _list(pg) != before
    pg.check("input[name=mode][value=replace]")
    expect(pg.locator("#steer-result h2")).to_contain_text("replace")
    assert "_mode=replace" in pg.url


def test_segment_steering_shows_the_cost_for_all_test_users(steer_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = steer_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN}/users/2")
    pg.click("#segment-run")  # nothing edited yet: the page says what to do
    expect(pg.locator("#segment-results .error")).to_contain_text("Move the slider")
    pg.locator(".slider-row[data-kind=scale] input[type=range]").first.fill("10")
    pg.click("#segment-run")
    out = pg.locator("#segment-results")
    expect(out).to_contain_text("NDCG@10 of the held-out item")
    expect(out).to_contain_text("test users affected")
    expect(out.locator("tbody tr")).to_have_count(1)
    assert re.search(r"\d+\.\d{4} → \d+\.\d{4}", out.inner_text())
