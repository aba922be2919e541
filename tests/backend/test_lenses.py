"""The lenses (docs/method.md §6) on a fixture database: the latent map's JSON twin and page, and a
latent's neighbours in its own run and in another run on the same dataset."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load_file

from backend.app import create_app
from backend.lenses import arrays, neighbours
from core import rundir
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.conftest import make_settings
from tests.backend.lens_runs import RUN_A, RUN_B, SIZES, LensRuns, publish_lens_runs


@pytest.fixture(scope="module")
def lens_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, LensRuns]]:
    settings = make_settings(tmp_path_factory.mktemp("lenses"))
    migrate.upgrade(settings.resolved_database_url)
    runs = publish_lens_runs(settings.data_dir, session_factory(settings.resolved_database_url))
    arrays.clear_cache()
    neighbours.clear_cache()
    with TestClient(create_app(settings)) as client:
        yield client, runs


def _sae(run_dir: Path) -> dict[str, np.ndarray]:
    return load_file(str(run_dir / rundir.SAE_DIR / rundir.SAE_WEIGHTS))


def _active_users(run_dir: Path) -> list[set[int]]:
    """Each latent's users, by a dense TopK encode written out here (not the backend's code)."""
    sae = _sae(run_dir)
    x = load_file(str(run_dir / rundir.VECTORS))["user_vectors"]
    pre = (x - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
    users: list[set[int]] = [set() for _ in range(pre.shape[1])]
    for u, row in enumerate(pre):
        for lat in np.argsort(-row, kind="stable")[: SIZES["k"]]:
            if row[lat] > 0:
                users[int(lat)].add(u)
    return users


def test_latent_map_json_lists_every_latent_with_coordinates_method_and_link(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, runs = lens_runs
    body = client.get(f"/runs/{RUN_A}/map.json", params={"latent": 4}).json()
    W_dec = _sae(runs.a.artifact_dir)["W_dec"]
    assert body["n_latents"] == body["n_mapped"] == SIZES["n_latents"]
    assert body["layout"] == "t-SNE"  # 96 latents: t-SNE (PCA alone below 50)
    assert body["highlight"] == 4
    points = {p["idx"]: p for p in body["points"]}
    assert points[5]["x"] == pytest.approx(float(W_dec[5, 0]), abs=5e-4)  # 3 decimals
    assert points[5]["y"] == pytest.approx(float(W_dec[5, 1]), abs=5e-4)
    # tag latents have a verified TF-IDF concept and no LLM confidence; the others none
    assert points[0]["method"] == "tfidf" and points[0]["concept"] == runs.a.tags[0]
    assert points[SIZES["n_tags"]]["method"] == "none"
    assert body["by_method"] == {
        "both": 0, "tfidf": SIZES["n_tags"], "llm": 0, "none": SIZES["n_latents"] - SIZES["n_tags"]
    }  # fmt: skip
    assert points[7]["url"] == f"/runs/{RUN_A}/latents/7"


def test_latent_map_page_has_its_script_a_caption_and_the_latent_list(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, _ = lens_runs
    html = client.get(f"/runs/{RUN_A}/map").text
    assert 'id="latent-map"' in html and 'id="latent-map-data"' in html
    assert "/static/map.js?v=" in html and "plotly" in html
    assert 'id="latent-map-caption"' in html and f'href="/runs/{RUN_A}/latents"' in html
    assert f'href="/runs/{RUN_A}/map"' in client.get(f"/runs/{RUN_A}").text  # linked from the run


def test_latent_map_of_a_run_published_without_coordinates_says_how_to_get_them(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, _ = lens_runs
    body = client.get("/runs/fixture/map.json").json()
    assert body["n_mapped"] == 0 and body["points"] == [] and body["n_latents"] == 20
    assert "recsae versions publish fixture" in client.get("/runs/fixture/map").text


def test_neighbours_in_the_same_run_by_decoder_cosine_and_coactivation(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, runs = lens_runs
    latent = 2
    body = client.get(f"/runs/{RUN_A}/latents/{latent}/neighbours.json").json()
    W = _sae(runs.a.artifact_dir)["W_dec"].astype(np.float64)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    cos = W @ W[latent]
    cos[latent] = -np.inf
    got = body["same_run"]["decoder_cosine"]
    assert [r["idx"] for r in got] == list(np.argsort(-cos, kind="stable")[:5])
    assert got[0]["score"] == pytest.approx(cos[got[0]["idx"]], abs=1e-4)

    users = _active_users(runs.a.artifact_dir)
    assert body["latent"]["n_users_active"] == len(users[latent]) > 0
    jaccard = {
        m: len(users[latent] & users[m]) / len(users[latent] | users[m])
        for m in range(SIZES["n_latents"])
        if m != latent and users[latent] & users[m]
    }
    co = body["same_run"]["coactivation"]
    assert co, "a tag latent shares users with other latents"
    assert co[0]["score"] == pytest.approx(max(jaccard.values()), abs=1e-4)
    for r in co:
        assert r["score"] == pytest.approx(jaccard[r["idx"]], abs=1e-4)


def test_neighbours_across_runs_find_the_permuted_twin_with_score_one(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, runs = lens_runs
    latent = 3
    body = client.get(f"/runs/{RUN_A}/latents/{latent}/neighbours.json").json()
    others = {o["run"]["id"]: o for o in body["other_runs"]}
    assert set(others) == {RUN_B}  # "fixture" is another dataset
    other = others[RUN_B]
    assert (other["shared_users"], other["shared_items"]) == (SIZES["n_users"], SIZES["n_items"])
    twin = runs.twin(latent)
    assert other["coactivation"][0]["idx"] == twin
    assert other["coactivation"][0]["score"] == pytest.approx(1.0)
    assert other["item_effects"][0]["idx"] == twin
    assert other["item_effects"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert other["item_effects"][1]["score"] < 0.999
    assert other["coactivation"][0]["url"] == f"/runs/{RUN_B}/latents/{twin}"
    # and back: B's twin finds A's latent
    back = client.get(f"/runs/{RUN_B}/latents/{twin}/neighbours.json").json()
    assert back["other_runs"][0]["item_effects"][0]["idx"] == latent


def test_neighbours_page_and_the_latent_page_section(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, runs = lens_runs
    html = client.get(f"/runs/{RUN_A}/latents/3/neighbours").text
    assert f'href="/runs/{RUN_B}/latents/{runs.twin(3)}"' in html
    assert "by decoder cosine" in html and "by item effects" in html
    fragment = client.get(f"/runs/{RUN_A}/latents/3/neighbours", params={"_fragment": 1}).text
    assert "<html" not in fragment and "by co-activation" in fragment
    latent_page = client.get(f"/runs/{RUN_A}/latents/3").text
    assert 'id="neighbours"' in latent_page and "/static/neighbours.js?v=" in latent_page
    assert f'data-fragment="/runs/{RUN_A}/latents/3/neighbours?_fragment=1"' in latent_page
    assert f'href="/runs/{RUN_A}/map?latent=3"' in latent_page


def test_neighbours_errors_unknown_latent_404_and_missing_artifacts_503(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    client, _ = lens_runs
    missing = client.get(f"/runs/{RUN_A}/latents/{SIZES['n_latents']}/neighbours.json")
    assert missing.status_code == 404 and "no latent" in missing.json()["detail"]
    broken = client.get("/runs/fixture/latents/0/neighbours.json")
    assert broken.status_code == 503 and "missing" in broken.json()["detail"]


def test_neighbours_with_another_runs_files_missing_still_answer_and_say_why(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    runs = publish_lens_runs(settings.data_dir, session_factory(settings.resolved_database_url))
    (runs.b.artifact_dir / rundir.VECTORS).unlink()
    with TestClient(create_app(settings)) as client:
        answer = client.get(f"/runs/{RUN_A}/latents/3/neighbours.json")
        html = client.get(f"/runs/{RUN_A}/latents/3/neighbours").text
    assert answer.status_code == 200
    body = answer.json()
    assert body["same_run"]["decoder_cosine"]  # this run's neighbours are unaffected
    (other,) = body["other_runs"]
    assert other["run"]["id"] == RUN_B and rundir.VECTORS in other["error"]
    assert "Cannot compare" in html


def test_the_latent_page_shows_its_nearest_latents_inline(
    lens_runs: tuple[TestClient, LensRuns],
) -> None:
    """docs/method.md §6.3: the top 5 by decoder cosine are in the latent page itself (and its
    JSON twin), not only behind a link; checked against cosines computed here from W_dec."""
    client, runs = lens_runs
    latent = 2
    W = _sae(runs.a.artifact_dir)["W_dec"].astype(np.float64)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    cos = W @ W[latent]
    cos[latent] = -np.inf
    want = [int(i) for i in np.argsort(-cos, kind="stable")[:5]]
    twin = client.get(f"/runs/{RUN_A}/latents/{latent}.json").json()
    assert [r["idx"] for r in twin["neighbours"]] == want
    for r in twin["neighbours"]:
        assert r["score"] == pytest.approx(cos[r["idx"]], abs=1e-4)
    page = client.get(f"/runs/{RUN_A}/latents/{latent}", headers={"Accept": "text/html"}).text
    inline = page.split('<ol class="neighbours-inline">', 1)[1].split("</ol>", 1)[0]
    links = [int(m) for m in re.findall(rf'href="/runs/{RUN_A}/latents/(\d+)"', inline)]
    assert links == want
    # a run whose lens files are missing: the page still answers, with the links only
    broken = client.get("/runs/fixture/latents/0", headers={"Accept": "text/html"})
    assert broken.status_code == 200 and 'class="neighbours-inline"' not in broken.text
