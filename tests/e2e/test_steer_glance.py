"""Issue 11 in Debian chromium: steering at a glance and "why this item" on a synthetic run.

Open a user page, move a slider: the list before and the list after stand side by side, an
entered item is marked on the after list (and what left, on the before list); open "why this
item" and see the plotly chart (plotly.js is loaded when the panel opens); type a value out of
range in the box beside a slider and see it refused there, the lists untouched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import guarded_page, synthetic_server

pytestmark = pytest.mark.browser
RUN = "glance-e2e"


@pytest.fixture(scope="module")
def glance_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with synthetic_server(tmp_path_factory.mktemp("glance-live"), RUN) as base:
        yield base


@pytest.fixture
def glance_page(browser: object, glance_server: str) -> Iterator[object]:
    with guarded_page(browser, glance_server) as pg:
        yield pg


def test_steer_side_by_side_why_chart_and_inline_refusal(glance_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = glance_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN}/users/0")
    expect(pg.locator("h1")).to_contain_text("User 0")
    expect(pg.locator("h1")).to_contain_text("in the dataset")
    expect(pg.locator("#base-list")).to_have_count(0)  # nothing steered: one list

    pg.locator(".slider-row input[type=range]").first.fill("-10")
    before, after = pg.locator("#base-list"), pg.locator("#steered-list")
    expect(before).to_be_visible()
    expect(after).to_be_visible()
    # Side by side: the two lists share a row on a 1280 px screen.
    b, a = before.bounding_box(), after.bounding_box()
    assert b and a and b["x"] + b["width"] <= a["x"] and abs(b["y"] - a["y"]) < 5, (b, a)
    entered = after.locator("li[data-mark=entered]")
    expect(entered.first).to_be_visible()
    expect(entered.first.locator(".chg.new")).to_contain_text("entered")
    expect(before.locator("li[data-mark=left] .chg.left").first).to_have_text("left")

    # Why this item: open it from an entered item's link; the chart is drawn, the table agrees.
    idx = entered.first.get_attribute("data-idx")
    entered.first.locator("a.why-link").click()
    expect(pg.locator("#why-panel")).to_have_attribute("open", "")
    expect(pg.locator("#why-item")).to_have_value(idx or "")
    expect(pg.locator("#why-plot .main-svg").first).to_be_visible()
    expect(pg.locator("#why-plot")).to_have_attribute("data-drawn", idx or "")
    expect(pg.locator(f"#why-{idx}")).to_be_visible()
    expect(pg.locator(f"#why-{idx}")).to_contain_text("decoder bias")
    expect(pg.locator("table.why-table:visible")).to_have_count(1)

    # A bad value typed beside a slider is refused there; the lists stay as they were.
    shown = after.locator("li").evaluate_all("els => els.map(e => e.dataset.idx)")
    url = pg.url
    box = pg.locator(".slider-row[data-kind=scale] input.val").nth(1)
    box.fill("50")
    box.press("Enter")
    row = pg.locator(".slider-row.refused")
    expect(row.locator("#steer-refusal")).to_contain_text("got 50")
    expect(pg.locator("#steer-refusal")).to_have_count(1)
    assert after.locator("li").evaluate_all("els => els.map(e => e.dataset.idx)") == shown
    assert pg.url == url  # the refused value never reached the shareable URL
    # Put a good value back: the refusal goes, the view steers again.
    box.fill("2")
    box.press("Enter")
    expect(pg.locator("#steer-refusal")).to_have_count(0)
    expect(pg.locator("#why-panel")).to_have_attribute("open", "")  # kept open across swaps


def test_bad_edits_in_the_url_keep_the_page(glance_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = glance_page
    assert isinstance(pg, Page)
    latent = None
    pg.goto(f"/runs/{RUN}/users/1")
    latent = pg.locator(".slider-row").first.get_attribute("data-latent")
    response = pg.goto(f"/runs/{RUN}/users/1?_edits={latent}:99")
    assert response is not None and response.status == 422
    expect(pg.locator(f'.slider-row[data-latent="{latent}"] #steer-refusal')).to_contain_text(
        "got 99"
    )
    expect(pg.locator("#steered-list li")).to_have_count(10)
    expect(pg.locator("#steer-panel")).to_be_visible()


def test_segment_panel_shows_cis_and_explains_inactive(glance_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = glance_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN}/users/2")
    expect(pg.locator("#segment-inactive-help")).to_contain_text("switched on")
    pg.locator(".slider-row[data-kind=scale] input[type=range]").first.fill("10")
    pg.click("#segment-run")
    out = pg.locator("#segment-results")
    expect(out).to_contain_text("95% CI")
    expect(out).to_contain_text("only users where the latent is active")
    pg.check("#segment-inactive")
    pg.click("#segment-run")
    expect(out).to_contain_text("also switched on where it was inactive")
