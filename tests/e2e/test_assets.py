"""Issue 11 §4 in a real browser: no 404 on any page (the favicon is served), assets come
gzipped, and plotly.js is loaded by its content hash."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

PAGES = ["/", "/runs/fixture", "/runs/fixture/latents", "/runs/fixture/latents/0",
         "/runs/fixture/items", "/runs/fixture/users", "/runs/fixture/items/2"]  # fmt: skip


def test_no_page_answers_404_for_a_favicon_or_anything_else(page: Any) -> None:
    failed: list[str] = []
    icons: list[int] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for url in PAGES:
        page.goto(url)
        page.wait_for_load_state("load")
        href = page.locator('link[rel="icon"]').get_attribute("href")
        icons.append(page.request.get(href).status)
    assert failed == []
    assert icons == [200] * len(PAGES)


def test_plotly_arrives_gzipped_by_its_hash(page: Any) -> None:
    # The cartesian bundle (backend/assets.py: the latent page draws bars and scatters only).
    with page.expect_response(lambda r: "/vendor/plotly-cartesian.min.js?v=" in r.url) as info:
        page.goto("/runs/fixture/latents/0")
    response = info.value
    assert response.status == 200
    assert response.header_value("content-encoding") == "gzip"
    assert "immutable" in response.header_value("cache-control")
    page.locator("#fig-histogram svg.main-svg").first.wait_for(state="visible")
