"""HTML pages: each renders from the same context as its twin, links work, nothing is external."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

HTML = {"accept": "text/html"}
PAGES = [
    "/",
    "/runs/fixture",
    "/runs/fixture/latents",
    "/runs/fixture/latents?_sort=density&_page=2&_size=5",
    "/runs/fixture/latents/0",
    "/runs/fixture/latents/19",
    "/runs/fixture/items/3",
    "/docs",
]


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_and_load_nothing_from_the_internet(client: TestClient, url: str) -> None:
    response = client.get(url, headers=HTML)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|(src|href)=\"//", response.text), "external URL in page"
    for asset in re.findall(r'(?:src|href)="(/(?:static|vendor)/[^"]+)"', response.text):
        assert client.get(asset).status_code == 200, asset


@pytest.mark.parametrize("url", PAGES[:-1])
def test_every_page_links_its_json_twin(client: TestClient, url: str) -> None:
    html = client.get(url, headers=HTML).text
    twin = re.search(r'<a href="([^"]+)" class="json-link"', html)
    assert twin is not None
    response = client.get(twin.group(1).replace("&amp;", "&"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_index_lists_runs_with_metrics_and_links(client: TestClient) -> None:
    html = client.get("/", headers=HTML).text
    assert 'href="/runs/fixture"' in html and 'href="/runs/fixture/latents"' in html
    assert "0.054" in html and "0.0486" in html and "13.0%" in html
    assert "TF-IDF: 3 (3)" in html and "LLM: 2 (2)" in html


def test_run_page_shows_every_metric_table(client: TestClient) -> None:
    html = client.get("/runs/fixture", headers=HTML).text
    for text in ("Table 7", "Random SAE", "PCA-4", "tuning › related", "Configuration"):
        assert text in html
    assert 'id="fig-confidence"' in html and "/static/vendor/plotly-cartesian.min.js?v=" in html


def test_latent_list_links_latents_and_sorts(client: TestClient) -> None:
    html = client.get("/runs/fixture/latents?_sort=id&_order=asc&_size=5", headers=HTML).text
    assert html.count('href="/runs/fixture/latents/') == 5
    assert 'href="/runs/fixture/latents/0"' in html
    assert "page 1 / 4" in html and 'rel="next"' in html
    assert "too rare to verify" in html  # latent 3


def test_latent_list_fragment_is_only_the_results(client: TestClient) -> None:
    html = client.get("/runs/fixture/latents?q=comedy&_fragment=1", headers=HTML).text
    assert "<html" not in html and "<form" not in html and "<table" in html
    assert "comedy" in html and "horror" not in html


def test_latent_page_shows_concept_examples_and_figures(client: TestClient) -> None:
    html = client.get("/runs/fixture/latents/10", headers=HTML).text
    assert "horror" in html and "films about horror" in html  # TF-IDF and LLM concepts
    for role in ("construction", "verification", "random"):
        assert f'data-role="{role}"' in html
    assert 'href="/runs/fixture/users/2"' in html  # user links go to the steering page
    assert 'href="/runs/fixture/items/10"' in html and "Movie 10" in html
    assert 'id="fig-histogram"' in html and 'id="fig-histogram-data"' in html
    assert 'rel="prev"' in html and 'rel="next"' in html
    assert "Promoted by the decoder direction" in html


def test_tuning_curve_only_where_there_is_tuning(client: TestClient) -> None:
    assert 'id="fig-tuning"' in client.get("/runs/fixture/latents/0", headers=HTML).text
    assert 'id="fig-tuning"' not in client.get("/runs/fixture/latents/1", headers=HTML).text


def test_item_page_lists_latents(client: TestClient) -> None:
    html = client.get("/runs/fixture/items/3", headers=HTML).text
    assert "Movie 03" in html and "Latents active when the model recommends it" in html
    assert 'href="/runs/fixture/latents/' in html


def test_html_404_page_names_the_missing_latent(client: TestClient) -> None:
    response = client.get("/runs/fixture/latents/42", headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "run &#39;fixture&#39; has no latent 42" in response.text


def test_empty_database_index(fresh_settings: object) -> None:
    from backend.app import create_app

    with TestClient(create_app(fresh_settings)) as c:  # type: ignore[arg-type]
        assert "No run is published yet" in c.get("/", headers=HTML).text
        assert c.get("/runs/x.json").json()["detail"] == "unknown run 'x'; no run is published yet"
