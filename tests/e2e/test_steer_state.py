"""The steering panel's state and names in a real browser: the slider, its number box and the
URL hold the same value after loading a shared URL and after another edit (a value off the
slider's step grid is never snapped), and every control has an accessible name, unique on the
panel, that names the latent's concept."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from tests.e2e.conftest import guarded_page, synthetic_server

pytestmark = pytest.mark.browser
RUN = "steer-state"

# What a screen reader announces for a control: aria-label, else its text.
NAMES = """sel => [...document.querySelectorAll(sel)].map(el =>
  (el.getAttribute('aria-label') || el.textContent || '').trim())"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with synthetic_server(tmp_path_factory.mktemp("steer-state"), RUN) as base:
        yield base


def test_shared_value_stays_in_slider_box_and_url(browser, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    with guarded_page(browser, server) as pg:
        pg.goto(f"/runs/{RUN}/users/0")
        rows = pg.locator(".slider-row")
        first, second = rows.nth(0), rows.nth(1)
        latent = first.get_attribute("data-latent")
        step = float(first.locator("input[type=range]").get_attribute("data-step") or "0")
        assert step == 0.1  # a scale slider: 2.35 lies between two steps
        pg.goto(f"/runs/{RUN}/users/0?_edits={latent}:2.35")
        row = pg.locator(f'.slider-row[data-latent="{latent}"]')
        assert row.locator("input.val").input_value() == "2.35"
        assert row.locator("input[type=range]").input_value() == "2.35"

        second.locator("input.val").fill("3")  # the next edit, on another slider
        second.locator("input.val").press("Enter")
        other = second.get_attribute("data-latent")
        expect(pg).to_have_url(re.compile(rf"{other}(%3A|:)3\b"))
        assert f"{latent}:2.35" in unquote(pg.url), pg.url
        assert row.locator("input[type=range]").input_value() == "2.35"
        assert row.locator("input.val").input_value() == "2.35"

        # Names: each slider, box and button says which latent and concept it acts on.
        concept = row.get_attribute("data-concept") or ""
        label = row.locator("input[type=range]").get_attribute("aria-label") or ""
        assert latent in label and concept and concept in label, label
        assert "2.35" in (row.locator("input[type=range]").get_attribute("aria-valuetext") or "")
        pg.fill("#latent-search", "a")
        expect(pg.locator("#latent-search-results li button").first).to_be_visible()
        for sel in ("#steer-panel input[type=range]", "#steer-panel input.val",
                    "#steer-panel button"):  # fmt: skip
            names = pg.evaluate(NAMES, sel)
            assert all(names), (sel, names)
            assert len(names) == len(set(names)), (sel, names)
        pg.locator("#latent-search-results li button").first.click()
        remove = pg.locator(".slider-row button.remove").first
        box = remove.bounding_box()
        assert box and remove.evaluate("b => b.scrollWidth <= b.clientWidth")  # × not cut
        row_box = remove.locator("xpath=..").bounding_box()
        assert row_box and box["x"] + box["width"] <= row_box["x"] + row_box["width"] + 0.5
