"""Issue 11 in a real browser: filter state lives in the URL (header, dropdown and Back agree),
a bad address shows an HTML error page with a way back, and the home table fits 1400 px."""

from __future__ import annotations

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.factories import fixture_rows
from tests.backend.test_report import real_metrics
from tests.e2e.conftest import guarded_page

pytestmark = pytest.mark.browser

ROWS = "table.latents tbody tr"


def test_clicking_a_header_sorts_and_the_dropdown_agrees(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/runs/fixture/latents")
    assert page.input_value('select[name="_sort"]') == "confidence"
    page.click('table.latents thead a.sort:text("density")')
    page.wait_for_url("**_sort=density**")
    assert page.input_value('select[name="_sort"]') == "density"
    assert page.input_value('select[name="_order"]') == "desc"
    # Typing a filter afterwards keeps the header's sort (it used to revert to the dropdown's).
    page.fill('input[name="q"]', "comedy")
    page.wait_for_url("**q=comedy**")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 3")
    assert "_sort=density" in page.url
    assert page.locator("table.latents thead a.sort.active").inner_text() == "density"


def test_back_undoes_a_typed_filter(page) -> None:  # type: ignore[no-untyped-def]
    page.goto("/runs/fixture/latents")
    assert page.locator(ROWS).count() == 20
    page.fill('input[name="q"]', "comedy")
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 3")
    page.go_back()
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 20")
    assert "q=" not in page.url and page.url.endswith("/runs/fixture/latents")
    assert page.input_value('input[name="q"]') == ""  # the form follows the URL back
    page.go_forward()
    page.wait_for_function(f"() => document.querySelectorAll('{ROWS}').length === 3")
    assert page.input_value('input[name="q"]') == "comedy"


def test_bad_url_shows_html_error_page_with_working_link_back(page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto("/runs/fixture/latents?_sort=bogus&q=comedy")
    assert response is not None and response.status == 422
    assert "422" in page.locator("section.error h1").inner_text()
    assert "_sort" in page.locator("ul.problems").inner_text()
    page.click("text=this page without the bad values")
    page.wait_for_url("**/runs/fixture/latents?q=comedy")
    assert page.locator(ROWS).count() == 3


def test_unknown_latent_page_links_back_to_the_run(page) -> None:  # type: ignore[no-untyped-def]
    response = page.goto("/runs/fixture/latents/abc")
    assert response is not None and response.status == 422
    page.click("section.error >> text=the run fixture")
    page.wait_for_url("**/runs/fixture")


def test_home_table_has_no_horizontal_scroll_at_1400px(browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A run with an id as long as real ones ("ml-latest-small-bprmf"), on their own DB.
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    # ...with every headline metric filled in (the report tests' full metrics).
    rows = fixture_rows(run_id="ml-latest-small-bprmf-k8-seed0")
    rows["run"]["metrics"] = real_metrics()
    publish_run(session_factory(settings.resolved_database_url), **rows)
    with background_server(settings) as base_url, guarded_page(browser, base_url) as page:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto("/")
        _assert_no_sideways_scroll(page)


def _assert_no_sideways_scroll(page) -> None:  # type: ignore[no-untyped-def]
    widths = page.evaluate(
        """() => [...document.querySelectorAll('html, .table-scroll, table.runs')]
            .map((el) => [el.scrollWidth, el.clientWidth])"""
    )
    assert widths, "the runs table is missing"
    for scroll, client in widths:
        assert scroll <= client, f"scrolls sideways: {widths}"
