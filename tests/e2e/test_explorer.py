"""The explorer in a real browser: list → latent → concept and histogram drawn by plotly."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_latent_list_to_latent_page(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/runs/fixture/latents?_sort=id&_order=asc")
    rows = page.locator("table.latents tbody tr")
    assert rows.count() == 20
    page.click('a[href="/runs/fixture/latents/10"]')
    page.wait_for_url("**/runs/fixture/latents/10")
    tfidf = page.locator('.concept-card[data-method="tfidf"] .concept-text')
    assert tfidf.inner_text() == "horror"
    llm = page.locator('.concept-card[data-method="llm"] .concept-text')
    assert llm.inner_text() == "films about horror"
    svg = page.locator("#fig-histogram svg.main-svg").first
    svg.wait_for(state="visible")
    assert page.locator("#fig-histogram .bars path").count() == 4  # the 4 histogram bins


def test_filter_swaps_results_in_place(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/runs/fixture/latents")
    page.fill('input[name="q"]', "comedy")
    page.wait_for_function("() => document.querySelectorAll('table.latents tbody tr').length === 3")
    assert "q=comedy" in page.url  # the URL follows the filters (shareable)
    assert page.locator("form#latent-filters").count() == 1  # the form was not replaced


def test_tuning_curve_is_drawn(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/runs/fixture/latents/0")
    page.locator("#fig-tuning svg.main-svg").first.wait_for(state="visible")
    assert page.locator("#fig-tuning .scatterlayer .trace").count() == 2
