"""Issue 11: errors as pages for browsers (JSON for the API and the .json twins), forms that work
without JavaScript, clamped paging, the method and confound filters, paged item pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.deps import fmt
from backend.numbers import duration, words
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Latent

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
LATENTS = "/runs/fixture/latents"

# (url, the parameter the page must name)
BAD_INPUT = [
    (f"{LATENTS}/abc", "idx"),
    (f"{LATENTS}?_sort=bogus", "_sort"),
    (f"{LATENTS}?_order=sideways", "_order"),
    (f"{LATENTS}?min_confidence=abc", "min_confidence"),
    (f"{LATENTS}?confound=maybe", "confound"),
    ("/runs/fixture/items/abc", "idx"),
    ("/runs/fixture/users?_sort=bogus", "_sort"),
    ("/runs/fixture/users/0?_mode=bogus", "_mode"),
]


def _json_twin(url: str) -> str:
    path, _, query = url.partition("?")
    return f"{path}.json?{query}" if query else f"{path}.json"


@pytest.mark.parametrize(("url", "param"), BAD_INPUT)
def test_validation_422_is_an_html_page_naming_the_parameter_for_a_browser(
    client: TestClient, url: str, param: str
) -> None:
    r = client.get(url, headers=BROWSER)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    problems = re.search(r'<ul class="problems">(.*?)</ul>', r.text, re.S)
    assert problems and param in problems[1]
    assert 'href="/runs/fixture"' in r.text and 'href="/"' in r.text  # ways back: run, home


@pytest.mark.parametrize(("url", "param"), BAD_INPUT)
def test_validation_422_stays_json_for_the_json_twin(
    client: TestClient, url: str, param: str
) -> None:
    r = client.get(_json_twin(url), headers=BROWSER)
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["detail"], str) and param in body["detail"]
    assert any(e["loc"][-1] == param for e in body["errors"])


def test_404_is_an_html_page_for_a_browser_and_json_for_the_twin(client: TestClient) -> None:
    page = client.get(f"{LATENTS}/999", headers=BROWSER)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "has no latent 999" in page.text and 'href="/runs/fixture"' in page.text
    unknown = client.get("/runs/nope/latents", headers=BROWSER)
    assert unknown.status_code == 404 and "unknown run" in unknown.text
    assert 'href="/runs/nope"' not in unknown.text  # no link to a run that does not exist
    twin = client.get(f"{LATENTS}/999.json", headers=BROWSER)
    assert twin.status_code == 404 and twin.json() == {"detail": twin.json()["detail"]}


def test_error_page_link_back_drops_only_the_bad_parameters(client: TestClient) -> None:
    r = client.get(f"{LATENTS}?q=comedy&_sort=bogus&_fragment=1", headers=BROWSER)
    assert r.status_code == 422
    assert f'href="{LATENTS}?q=comedy"' in r.text
    assert "<html" not in r.text  # the fragment the filter form swaps in, not a whole page


def test_empty_filter_fields_from_a_form_without_javascript_are_no_filter(
    client: TestClient,
) -> None:
    blank = "method=&min_confidence=&confound=&q="
    page = client.get(f"{LATENTS}?{blank}", headers=BROWSER)
    assert page.status_code == 200 and "20 latents match" in page.text
    twin = client.get(f"{LATENTS}.json?{blank}").json()
    assert twin["total"] == 20
    assert twin["filters"]["method"] is None and twin["filters"]["min_confidence"] is None


def test_page_past_the_last_clamps_and_says_so(client: TestClient) -> None:
    twin = client.get(f"{LATENTS}.json?_page=999&_size=5").json()
    assert twin["pages"] == 4 and twin["filters"]["page"] == 4
    assert twin["clamped"] == {"asked": 999, "shown": 4}
    assert [lat["idx"] for lat in twin["latents"]] != []
    page = client.get(f"{LATENTS}?_page=999&_size=5", headers=BROWSER).text
    assert "There is no page 999" in page and "page 4 of 4" in page
    assert client.get(f"{LATENTS}.json?_page=2&_size=5").json()["clamped"] is None


def test_method_llm_without_text_keeps_latents_with_an_llm_concept(
    client: TestClient, rows: dict[str, Any]
) -> None:
    with_llm = {lat["idx"] for lat in rows["latents"] if lat["llm_concept"]}
    assert 0 < len(with_llm) < 20
    twin = client.get(f"{LATENTS}.json?method=llm&_size=100").json()
    assert {lat["idx"] for lat in twin["latents"]} == with_llm and twin["total"] == len(with_llm)


# latent -> (popularity_corr, activity_corr); the others stay NULL (not computed)
CORRELATIONS = {0: (0.8, 0.1), 1: (-0.6, 0.7), 2: (0.2, -0.55), 3: (0.1, 0.2), 4: (0.49, None)}


@pytest.fixture
def confounded(app_client: TestClient, published: Settings) -> TestClient:
    sessions = session_factory(published.resolved_database_url)
    with sessions() as session:
        for idx, (pop, act) in CORRELATIONS.items():
            session.execute(
                update(Latent)
                .where(Latent.run_id == "fixture", Latent.idx == idx)
                .values(popularity_corr=pop, activity_corr=act)
            )
        session.commit()
    return app_client


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("any", {0, 1, 2}), ("popularity", {0, 1}), ("activity", {1, 2}), ("none", {3})],
)
def test_confound_filter_keeps_strong_correlations_and_never_flags_null(
    confounded: TestClient, kind: str, expected: set[int]
) -> None:
    twin = confounded.get(f"{LATENTS}.json?confound={kind}&_size=100").json()
    assert {lat["idx"] for lat in twin["latents"]} == expected
    assert twin["filters"]["confound"] == kind


def test_confound_column_flags_with_both_values_and_dashes_null(confounded: TestClient) -> None:
    twin = confounded.get(f"{LATENTS}.json?_sort=id&_order=asc&_size=100").json()
    by_idx = {lat["idx"]: lat for lat in twin["latents"]}
    assert (
        by_idx[1]["confounds"] == ["popularity", "activity"] and by_idx[1]["activity_corr"] == 0.7
    )
    assert by_idx[4]["confounds"] == [] and by_idx[9]["popularity_corr"] is None
    page = confounded.get(f"{LATENTS}?_sort=id&_order=asc", headers=BROWSER).text
    assert page.count('class="flag confound"') == 4  # 0: pop; 1: pop + act; 2: act
    assert (
        "Spearman r with the popularity of promoted items = -0.6; "
        "with user activity (history length) = 0.7" in page
    )
    assert "confound correlations not computed for this latent" in page


def test_item_page_pages_its_latents(client: TestClient) -> None:
    full = client.get("/runs/fixture/items/0.json?_size=500").json()
    assert full["total"] > 3
    first = client.get("/runs/fixture/items/0.json?_size=3").json()
    assert len(first["latents"]) == 3 and first["pages"] > 1
    assert first["latents"] == full["latents"][:3] and first["links"]["next"]
    last = client.get("/runs/fixture/items/0.json?_size=3&_page=999").json()
    assert last["filters"]["page"] == first["pages"] and last["clamped"]["asked"] == 999
    page = client.get("/runs/fixture/items/0?_size=3", headers=BROWSER).text
    assert 'rel="next"' in page


def test_no_machine_notation_and_keys_read_as_words() -> None:
    assert fmt(2.985e-05) == "2.98 × 10⁻⁵" and "e-" not in fmt(1e-9)
    assert duration(2.985e-05) == "29.9 µs" and duration(174.95) == "2 min 55 s"
    assert words("related_share") == "related concept · share of top-10 items"
    assert words("n_trained_users") == "number of trained users"


def test_home_and_latent_list_columns_are_explained(client: TestClient) -> None:
    for url in (
        "/",
        LATENTS,
        "/runs/fixture/items/0",
        "/runs/fixture/items",
        "/runs/fixture/users",
    ):
        html = client.get(url, headers=BROWSER).text
        heads = re.findall(
            r"(<th\b[^>]*>.*?</th>)", html.split("<thead>", 1)[1].split("</thead>")[0], re.S
        )
        assert heads, url
        for head in heads:
            assert "title=" in head, (url, head)  # on the <th> or on its sort link


def test_report_figures_have_a_text_alternative(client: TestClient) -> None:
    html = client.get("/runs/fixture", headers=BROWSER).text
    plots = re.findall(r'<div class="plot"[^>]*>', html)
    assert plots and all('role="figure"' in p and "aria-label=" in p for p in plots)
    assert html.count('<details class="fig-data">') == len(plots)


@pytest.mark.parametrize("index", ["users", "items"])
def test_indexes_clamp_a_page_past_the_last_and_say_so(client: TestClient, index: str) -> None:
    twin = client.get(f"/runs/fixture/{index}.json?_page=50&_size=5").json()
    assert twin["filters"]["page"] == twin["pages"] and twin["clamped"]["asked"] == 50
    page = client.get(f"/runs/fixture/{index}?_page=50&_size=5", headers=BROWSER).text
    assert f"There is no page 50: the list has {twin['pages']} pages" in page


def test_validation_messages_are_in_the_projects_words_not_pydantics(client: TestClient) -> None:
    """docs/architecture.md, 'Text, names and errors': a bad value's message names the field and
    says what it must be, with an example; pydantic's wording never reaches a person."""
    expected = {
        f"{LATENTS}/abc.json": "idx must be a whole number, like 3",
        f"{LATENTS}.json?min_confidence=abc": "min_confidence must be a number, like 0.5",
        f"{LATENTS}.json?_page=1.5": "_page must be a whole number, like 3",
    }
    for url, words_ in expected.items():
        body = client.get(url).json()
        assert body["detail"] == words_, (url, body)
        assert [e["msg"] for e in body["errors"]] == [words_]
    page = client.get(f"{LATENTS}?min_confidence=abc", headers=BROWSER).text
    assert "min_confidence must be a number, like 0.5" in page
    for text in (page, str(client.get(f"{LATENTS}.json?_page=x&min_confidence=y").json())):
        assert "unable to parse" not in text and "Input should be" not in text


def test_an_unknown_path_says_what_was_not_found_with_the_ways_on(client: TestClient) -> None:
    twin = client.get("/no/such/place.json")
    assert twin.status_code == 404 and twin.json() == {"detail": twin.json()["detail"]}
    assert "/no/such/place.json" in twin.json()["detail"] and "/docs" in twin.json()["detail"]
    page = client.get("/no/such/place", headers=BROWSER)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "There is no page or API at /no/such/place" in page.text
    assert 'href="/"' in page.text and 'href="/docs"' in page.text
    assert '<p class="detail">Not Found</p>' not in page.text
