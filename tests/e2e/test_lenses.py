"""The lenses in Debian chromium (docs/method.md §6): the latent map draws every latent, recolours
by confidence, and a click on a point opens that latent; the latent page's neighbours section loads
and links the twin latent of another run on the same dataset."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.lens_runs import RUN_A, RUN_B, SIZES, LensRuns, publish_lens_runs
from tests.e2e.conftest import guarded_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lens_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LensRuns]]:
    data_dir = tmp_path_factory.mktemp("lens-live")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    runs = publish_lens_runs(data_dir, session_factory(settings.resolved_database_url))
    with background_server(settings) as base:
        yield base, runs


@pytest.fixture
def lens_page(browser: object, lens_server: tuple[str, LensRuns]) -> Iterator[object]:
    with guarded_page(browser, lens_server[0]) as pg:
        yield pg


def test_latent_map_draws_recolours_and_a_click_opens_the_latent(lens_page: object) -> None:
    from playwright.sync_api import Page, expect

    pg = lens_page
    assert isinstance(pg, Page)
    pg.goto(f"/runs/{RUN_A}")
    pg.get_by_role("link", name="Latent map").click()
    expect(pg).to_have_url(re.compile(rf"/runs/{RUN_A}/map$"))
    expect(pg.locator("#latent-map[data-ready='1']")).to_be_attached()
    points = pg.locator("#latent-map .scatterlayer path.point")
    expect(points).to_have_count(SIZES["n_latents"])
    expect(pg.locator("#latent-map-caption")).to_contain_text("t-SNE")
    pg.select_option("#map-colour", "confidence")
    expect(pg.locator("#latent-map .colorbar")).to_have_count(1)
    expect(points).to_have_count(SIZES["n_latents"])

    box = points.nth(SIZES["n_latents"] - 1).bounding_box()  # drawn last: on top of the others
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    pg.mouse.move(x, y)
    expect(pg.locator(".hoverlayer .hovertext")).to_have_count(1)
    hovered = pg.locator(".hoverlayer .hovertext").text_content() or ""
    idx = re.match(r"#(\d+)", hovered)
    assert idx, hovered
    pg.mouse.click(x, y)
    expect(pg).to_have_url(re.compile(rf"/runs/{RUN_A}/latents/{idx.group(1)}$"))
    expect(pg.locator("h1")).to_contain_text(f"Latent #{idx.group(1)}")


def test_latent_page_neighbours_section_links_the_twin_in_the_other_run(
    lens_page: object, lens_server: tuple[str, LensRuns]
) -> None:
    from playwright.sync_api import Page, expect

    pg = lens_page
    assert isinstance(pg, Page)
    runs = lens_server[1]
    pg.goto(f"/runs/{RUN_A}/latents/3")
    section = pg.locator("#neighbours")
    section.scroll_into_view_if_needed()
    expect(section).to_have_attribute("data-loaded", "1")
    expect(section.locator(".neighbours-same table")).to_have_count(2)
    other = section.locator(f".neighbours-other[data-run='{RUN_B}'] a")
    twin = other.filter(has_text=re.compile(rf"#{runs.twin(3)}$"))
    expect(twin.first).to_be_visible()
    twin.first.click()
    expect(pg).to_have_url(re.compile(rf"/runs/{RUN_B}/latents/{runs.twin(3)}$"))
