"""JSON twins: the same context as the pages, exact values, loud 404s and 422s."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.factories import llm_confidence

LATENTS = "/runs/fixture/latents.json"


def test_index_json_lists_the_run_with_headline_metrics(client: TestClient) -> None:
    body = client.get("/index.json").json()
    (run,) = body["runs"]
    assert run["id"] == "fixture" and run["url"] == "/runs/fixture"
    assert run["headline"]["base_ndcg@10"] == 0.054
    assert run["headline"]["sae_ndcg@10"] == 0.0486
    assert run["headline"]["dead_fraction"] == 0.13
    assert run["headline"]["concepts"] == {
        "tfidf": {"latents": 3, "concepts": 3},
        "llm": {"latents": 2, "concepts": 2},
    }


def test_run_json_turns_nested_metrics_into_tables(client: TestClient) -> None:
    body = client.get("/runs/fixture.json").json()
    sections = {s["name"]: s["tables"] for s in body["sections"]}
    assert set(sections) == {"tuning"}  # the rest is in the report's own tables
    base = body["report"]["table7"]["rows"][1]
    assert base["label"] == "Base model" and base["cells"][0]["value"] == 0.054
    (tuning,) = sections["tuning"]  # one flat child: a key/value table titled by its path
    assert tuning["title"] == "tuning › related" and ["10", 0.475] in tuning["rows"]
    fig = body["figures"]["confidence"]
    assert [t["type"] for t in fig["data"]] == ["histogram", "histogram"]


def test_metric_tables_handle_any_nesting() -> None:
    from backend.report import metric_tables
    from backend.report.generic import series_count

    tables = metric_tables(
        {"a": 1, "ci": [0.1, 0.2], "long": list(range(100)), "x": {"y": {"p": 1}, "z": {"p": 2}}},
        "m",
    )
    # A long list is no cell (never "long [100 values]"): it is counted, the JSON twin holds it.
    assert tables[0]["rows"] == [["a", 1], ["ci", [0.1, 0.2]]]
    assert series_count({"long": list(range(100)), "x": {"e": list(range(17)), "c": [1, 2]}}) == 2
    assert tables[1] == {"title": "m › x", "columns": ["", "p"], "rows": [["y", 1], ["z", 2]]}


def test_latent_list_defaults_sort_by_tfidf_confidence(client: TestClient) -> None:
    body = client.get(LATENTS).json()
    assert body["total"] == 20 and body["pages"] == 1
    confs = [row["tfidf_confidence"] for row in body["latents"]]
    known = [c for c in confs if c is not None]
    assert known == sorted(known, reverse=True) and confs[len(known) :] == [None] * 5
    assert body["latents"][0]["url"] == f"/runs/fixture/latents/{body['latents'][0]['idx']}"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"_sort": "id", "_order": "asc", "_size": 3}, [0, 1, 2]),
        ({"_sort": "id", "_order": "asc", "_size": 3, "_page": 7}, [18, 19]),
        ({"_sort": "density", "_size": 2}, [19, 18]),
        ({"_sort": "id", "_order": "asc", "q": "Sci", "method": "tfidf"}, [8, 13, 18]),
        (
            {"_sort": "llm_confidence", "min_confidence": 1.0},
            [i for i in range(20) if (llm_confidence(i) or 0) >= 1.0],
        ),
    ],
)
def test_latent_list_sort_filter_page(
    client: TestClient, params: dict[str, Any], expected: list[int]
) -> None:
    body = client.get(LATENTS, params=params).json()
    assert [row["idx"] for row in body["latents"]] == expected


def test_pager_links_keep_filters(client: TestClient) -> None:
    body = client.get(LATENTS, params={"_size": 5, "_page": 2, "q": "o"}).json()
    assert body["links"]["prev"].startswith("/runs/fixture/latents?")
    assert "_page=1" in body["links"]["prev"] and "q=o" in body["links"]["prev"]
    assert "_page=3" in body["links"]["next"]
    assert "_page" not in body["links"]["sort"]["density"]


@pytest.mark.parametrize(
    "params", [{"_sort": "name"}, {"_order": "up"}, {"_page": 0}, {"method": "gpt"}]
)
def test_bad_query_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    assert client.get(LATENTS, params=params).status_code == 422


def test_latent_json(client: TestClient) -> None:
    body = client.get("/runs/fixture/latents/0.json").json()
    assert body["latent"]["idx"] == 0
    assert body["concepts"]["tfidf"] | {"latest": None} == {
        "text": "horror",
        "confidence": 0.0,
        "latest": None,
        "human": None,  # no closed study has rated it (issue 10)
        # the concept shown, its null and verdict (issue 9, docs/method.md §1.11): the
        # fixture's concepts have no null, and 0.0 is below 0.8 whatever the null
        "concept_id": body["concepts"]["tfidf"]["latest"]["id"],
        "null_p": None,
        "null_p95": None,
        "null_mean": None,
        "null_n": 0,
        "null_method": None,
        "null_missing": None,
        "verified": False,
        "verdict_code": "below",
        "verdict": "not verified (below 0.8)",
        "verdict_text": "confidence 0.00 · not verified (below 0.8)",
        "reason": None,
        "rejected": [],
        # its output check (docs/method.md §1.9): the fixture's concepts have none
        "output_verdict": None,
        "output_label": "not checked on output",
        "output_text": "not checked on output (the check runs at publish: this concept was "
        "published before it existed, or explained since)",
        "output": None,
    }
    assert body["concepts"]["tfidf"]["latest"]["terms"][0] == ["horror", 0.9]
    assert set(body["examples"]) == {"construction", "verification", "random"}
    first = body["examples"]["construction"][0]
    assert first["predicted"] == {"idx": 0, "title": "Movie 00", "url": "/runs/fixture/items/0"}
    assert first["user_url"] == "/runs/fixture/users/0"
    assert [p["idx"] for p in body["promoted"]] == [0, 1, 2]
    assert body["figures"]["histogram"]["data"][0]["type"] == "bar"
    assert len(body["figures"]["histogram"]["layout"]["shapes"]) == 9
    assert [t["name"] for t in body["figures"]["tuning"]["data"]] == [
        "related concept · cases with it in the top 10",
        "other concepts · cases with them in the top 10",
    ]
    assert body["links"]["prev"] is None and body["links"]["next"] == "/runs/fixture/latents/1"
    assert [h["method"] for h in body["history"]] == ["llm", "tfidf"]


def test_latent_without_tuning_has_no_tuning_figure(client: TestClient) -> None:
    body = client.get("/runs/fixture/latents/19.json").json()
    assert body["figures"]["tuning"] is None and body["links"]["next"] is None
    assert body["latent"]["dead"] is True


def test_item_json(client: TestClient) -> None:
    body = client.get("/runs/fixture/items/3.json").json()
    assert body["item"]["title"] == "Movie 03"
    # user u's top 10 is (u + j) % 12: item 3 is in it for u in {0, 1, 2, 3, 6, 7}
    assert body["n_cases"] == 6 and body["n_top1"] == 1
    assert all(row["url"] == f"/runs/fixture/latents/{row['idx']}" for row in body["latents"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/runs/nope.json", "unknown run 'nope'; published runs: fixture"),
        ("/runs/nope/latents.json", "unknown run 'nope'"),
        ("/runs/fixture/latents/20.json", "run 'fixture' has no latent 20; it has 20 latents"),
        ("/runs/fixture/items/99.json", "run 'fixture' has no movie 99"),
        ("/runs/nope/items/1.json", "unknown run 'nope'"),
    ],
)
def test_404s_name_what_is_missing(client: TestClient, url: str, message: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert message in response.json()["detail"]


def test_openapi_documents_the_json_twins(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/index.json",
        "/runs/{run_id}.json",
        "/runs/{run_id}/latents.json",
        "/runs/{run_id}/latents/{idx}.json",
        "/runs/{run_id}/items/{idx}.json",
    ):
        assert path in paths
    params = {p["name"] for p in paths["/runs/{run_id}/latents.json"]["get"]["parameters"]}
    assert {"_sort", "_order", "_page", "_size", "q", "min_confidence", "method"} <= params


def test_docs_and_vendor_assets_are_served_locally(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "://" not in html and "/vendor/swagger/swagger-ui-bundle.js" in html
    assert client.get("/vendor/swagger/swagger-ui-bundle.js").status_code == 200
    assert client.get("/vendor/swagger/swagger-ui.css").status_code == 200
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000
