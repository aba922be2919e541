"""Issue 11 §1 in a real browser: find a user in the users index and open their page; find an
item and come back through the item page's breadcrumb.

User pages need a run's artifacts (the factory run has none), so the users test serves a small
synthetic run (``tests.backend.synthetic_run.make_run``) on its own server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.synthetic_run import make_run
from tests.e2e.conftest import guarded_page

pytestmark = pytest.mark.browser
RUN = "find-e2e"


@pytest.fixture(scope="module")
def synthetic_page(browser: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    data_dir = tmp_path_factory.mktemp("find-live")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    make_run(data_dir, sessions, RUN, n_items=200, n_users=30, d=16, n_latents=64, k=4, n_tags=12)
    with background_server(settings) as base, guarded_page(browser, base) as pg:
        yield pg


def test_users_index_search_then_follow_a_user_link(synthetic_page: Any) -> None:
    page = synthetic_page
    page.goto(f"/runs/{RUN}")
    page.click(f'a.button[href="/runs/{RUN}/users"]')
    page.wait_for_url(f"**/runs/{RUN}/users")
    assert page.locator("table.users tbody tr").count() == 30
    page.fill('input[name="q"]', "u17")  # the dataset's own id of user 17
    page.click('form#user-search button[type="submit"]')
    page.wait_for_url(f"**/runs/{RUN}/users?q=u17*")
    links = page.locator("table.users tbody tr td:first-child a")
    assert links.all_inner_texts() == ["user 17"]
    links.first.click()
    page.wait_for_url(f"**/runs/{RUN}/users/17")
    assert page.locator(f'nav.crumbs a[href="/runs/{RUN}/users"]').inner_text() == "users"
    page.click(f'nav.crumbs a[href="/runs/{RUN}/users"]')
    page.wait_for_url(f"**/runs/{RUN}/users")


def test_items_index_search_then_item_crumb_back(page: Any) -> None:
    page.goto("/runs/fixture/items")
    page.fill('input[name="q"]', "horror")
    page.press('input[name="q"]', "Enter")
    page.wait_for_url("**/runs/fixture/items?q=horror*")
    assert page.locator("table.items tbody tr").count() == 2
    page.click('table.items td a[href="/runs/fixture/items/6"] >> nth=1')
    page.wait_for_url("**/runs/fixture/items/6")
    page.click('nav.crumbs a[href="/runs/fixture/items"]')
    page.wait_for_url("**/runs/fixture/items")
    assert page.locator("table.items tbody tr").count() == 12
