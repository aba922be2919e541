"""Issue 11 §1, find anything: the users and items indexes (search, paging clamp, sorts, JSON twin).

The users tests publish their own run whose users differ in activity and NDCG (the shared
fixture's users all have 5 history items and the test item at rank 6).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from core.settings import Settings
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.factories import fixture_rows

HTML = {"accept": "text/html"}
N_USERS = 12


@pytest.fixture
def varied(fresh_settings: Settings) -> Iterator[TestClient]:
    """Run 'varied': user u has u + 1 history items and its test item at rank u % 11 of its
    recorded top 10 (rank 10: not in it, NDCG 0); user 11 has no recorded case."""
    rows = fixture_rows(run_id="varied", n_items=40, n_users=N_USERS)
    for user in rows["users"]:
        u = user["idx"]
        user["history"] = list(range(20, 21 + u))
        user["external_id"] = f"ext-{100 + u}"
        user["test_item"] = 30 + u
    for case in rows["cases"]:
        u = case["user_idx"]
        top = [(u + j) % 20 for j in range(10)]
        if u % 11 < 10:
            top[u % 11] = 30 + u
        case["top_items"], case["top1_item"] = top, top[0]
    rows["cases"] = [c for c in rows["cases"] if c["user_idx"] != 11]
    publish_run(session_factory(fresh_settings.resolved_database_url), **rows)
    with TestClient(create_app(fresh_settings)) as client:
        yield client


def ndcg(u: int) -> float:
    return 0.0 if u % 11 == 10 else 1 / math.log2(u % 11 + 2)


def test_users_index_sorts_by_activity_ndcg_and_id(varied: TestClient) -> None:
    def order(sort: str, direction: str) -> list[int]:
        url = f"/runs/varied/users.json?_sort={sort}&_order={direction}"
        return [u["idx"] for u in varied.get(url).json()["users"]]

    assert order("activity", "desc") == list(range(N_USERS - 1, -1, -1))
    assert order("id", "asc") == list(range(N_USERS))
    by_ndcg = order("ndcg", "desc")
    assert by_ndcg[-1] == 11  # no recorded case: last in both orders
    assert order("ndcg", "asc")[-1] == 11
    assert by_ndcg[:-1] == sorted(range(11), key=lambda u: (-ndcg(u), u))
    body = varied.get("/runs/varied/users.json?_sort=ndcg").json()
    got = {u["idx"]: u["ndcg"] for u in body["users"]}
    assert got[0] == pytest.approx(1.0) and got[3] == pytest.approx(1 / math.log2(5))
    assert got[10] == 0.0 and got[11] is None
    assert "1 / log2(rank + 2)" in body["ndcg_note"]


def test_users_index_finds_a_user_by_internal_or_external_id(varied: TestClient) -> None:
    assert [u["idx"] for u in varied.get("/runs/varied/users.json?q=7").json()["users"]] == [7]
    found = varied.get("/runs/varied/users.json?q=ext-104").json()
    assert [u["idx"] for u in found["users"]] == [4]
    assert found["users"][0]["url"] == "/runs/varied/users/4"
    assert found["users"][0]["n_history"] == 5
    none = varied.get("/runs/varied/users?q=nobody", headers=HTML)
    assert none.status_code == 200 and "No user has the id nobody" in none.text


def test_users_index_paging_clamps_past_the_last_page(varied: TestClient) -> None:
    body = varied.get("/runs/varied/users.json?_sort=id&_order=asc&_size=5&_page=999").json()
    assert (body["filters"]["page"], body["pages"], body["total"]) == (3, 3, N_USERS)
    assert [u["idx"] for u in body["users"]] == [10, 11]
    assert body["links"]["next"] is None and "_page=2" in body["links"]["prev"]


def test_users_index_page_links_every_row_and_explains_ndcg(varied: TestClient) -> None:
    page = varied.get("/runs/varied/users?_size=3&_sort=id&_order=asc", headers=HTML)
    assert page.status_code == 200
    for u in range(3):
        assert f'href="/runs/varied/users/{u}"' in page.text
    assert 'href="/runs/varied/users?' in page.text  # sort links and pager
    assert "1 / log2(rank + 2)" in page.text
    assert '<a href="/runs/varied/users">users</a>' in page.text  # the breadcrumb


def test_items_index_searches_title_and_text(client: TestClient) -> None:
    body = client.get("/runs/fixture/items.json?q=horror").json()  # genre text of 0 and 6
    assert sorted(i["idx"] for i in body["items"]) == [0, 6]
    assert body["total"] == 2
    assert body["items"][0]["url"] == "/runs/fixture/items/0"
    assert [
        i["idx"] for i in client.get("/runs/fixture/items.json?q=MOVIE 11").json()["items"]
    ] == [11]


def test_items_index_sorts_by_popularity_title_and_id(client: TestClient) -> None:
    def order(query: str) -> list[int]:
        return [i["idx"] for i in client.get(f"/runs/fixture/items.json?{query}").json()["items"]]

    assert order("_sort=popularity&_order=desc") == list(range(12))  # popularity 100 - i
    assert order("_sort=popularity&_order=asc") == list(range(11, -1, -1))
    assert order("_sort=title&_order=desc") == list(range(11, -1, -1))
    assert order("_sort=id&_order=asc") == list(range(12))
    assert client.get("/runs/fixture/items.json?_sort=bogus").status_code == 422


def test_items_index_paging_clamps_past_the_last_page(client: TestClient) -> None:
    body = client.get("/runs/fixture/items.json?_size=5&_page=999&_sort=id&_order=asc").json()
    assert (body["filters"]["page"], body["pages"]) == (3, 3)
    assert [i["idx"] for i in body["items"]] == [10, 11]
    searched = client.get("/runs/fixture/items.json?q=horror&_size=1&_page=50").json()
    assert (searched["filters"]["page"], searched["pages"], len(searched["items"])) == (2, 2, 1)


def test_items_index_page_links_rows_and_the_item_crumb_links_back(client: TestClient) -> None:
    page = client.get("/runs/fixture/items?q=horror", headers=HTML)
    assert page.status_code == 200
    assert (
        'href="/runs/fixture/items/0"' in page.text and 'href="/runs/fixture/items/6"' in page.text
    )
    item = client.get("/runs/fixture/items/3", headers=HTML).text
    assert '<a href="/runs/fixture/items">movies</a>' in item


def test_run_pages_link_to_the_users_and_items_indexes(client: TestClient) -> None:
    for url in ("/", "/runs/fixture"):
        text = client.get(url, headers=HTML).text
        assert 'href="/runs/fixture/users"' in text and 'href="/runs/fixture/items"' in text


def test_latent_page_links_its_users_and_promoted_items(client: TestClient, rows: dict) -> None:
    text = client.get("/runs/fixture/latents/2", headers=HTML).text
    users = {ex["user_idx"] for ex in rows["examples"] if ex["latent_idx"] == 2}
    for u in users:  # the users where it fires most (its examples)
        assert f'href="/runs/fixture/users/{u}"' in text
    for idx, _score in rows["latents"][2]["promoted"]:  # the items it promotes most
        assert f'href="/runs/fixture/items/{idx}"' in text
