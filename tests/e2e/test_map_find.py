"""The latent map finds concepts (docs/method.md §6.2): typing text rings, on top of the map, the
latents whose concept contains it, and says how many; the count is checked against the map's
JSON twin."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.backend.lens_runs import RUN_A, LensRuns
from tests.e2e.conftest import guarded_page
from tests.e2e.test_lenses import lens_server  # noqa: F401  (the fixture, reused)

pytestmark = pytest.mark.browser


@pytest.fixture
def map_page(browser: object, lens_server: tuple[str, LensRuns]) -> Iterator[object]:  # noqa: F811
    with guarded_page(browser, lens_server[0]) as pg:
        yield pg


def test_find_rings_the_latents_whose_concept_matches(
    map_page: object,
    lens_server: tuple[str, LensRuns],  # noqa: F811
) -> None:
    from playwright.sync_api import Page, expect

    pg = map_page
    assert isinstance(pg, Page)
    body = httpx.get(f"{lens_server[0]}/runs/{RUN_A}/map.json").json()
    concepts = [p["concept"] for p in body["points"] if p.get("concept")]
    assert concepts
    query = concepts[0][:4].upper()  # case does not matter
    expected = sorted(
        p["idx"]
        for p in body["points"]
        if p.get("concept") and query.lower() in p["concept"].lower()
    )
    assert 0 < len(expected) < len(body["points"])

    pg.goto(f"/runs/{RUN_A}/map")
    expect(pg.locator("#latent-map[data-ready='1']")).to_be_attached()
    pg.fill("#map-find", query)
    expect(pg.locator("#latent-map")).to_have_attribute("data-found", str(len(expected)))
    expect(pg.locator("#map-find-status")).to_contain_text(f"{len(expected)} latent")
    ringed = pg.evaluate(
        "() => { const d = document.getElementById('latent-map').data; const t = d[d.length - 1];"
        " return t.customdata; }"
    )
    urls = {p["idx"]: p["url"] for p in body["points"]}
    assert sorted(ringed) == sorted(urls[i] for i in expected)
    pg.fill("#map-find", "zzzz-no-such-concept")
    expect(pg.locator("#map-find-status")).to_contain_text("no latent's concept contains")
