"""Steering: the engine's arithmetic against independent numpy, and the HTTP contract.

The fixture run is synthetic (``tests.backend.synthetic_run.make_run``): tag directions are
decoder rows, so latent t's concept (tag t) is what its direction promotes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load_file

from backend.app import create_app
from backend.steering import (
    MAX_EDITS,
    Edit,
    SteeringEngine,
    SteeringError,
    SteerMode,
    UnknownLatentError,
    UnknownUserError,
    build_run_text,
    clear_cache,
    engine_for_run,
)
from core import rundir
from core.rundir import ArtifactError
from core.settings import Settings
from core.store.engine import session_factory
from core.store.reads import ItemText, SteeringRows, UserSplit
from core.store.schema import Run
from core.text import item_token_sets
from tests.backend.synthetic_run import SyntheticRun, steerable_run

RUN = "steer-test"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SyntheticRun]:
    built = steerable_run(tmp_path_factory.mktemp("steer"), RUN, seed=1)
    clear_cache()
    return built


@pytest.fixture(scope="module")
def engine(built: tuple[Settings, SyntheticRun]) -> SteeringEngine:
    settings = built[0]
    with session_factory(settings.resolved_database_url)() as session:
        run = session.get(Run, RUN)
        assert run is not None
        return engine_for_run(session, run)


@pytest.fixture(scope="module")
def arrays(built: tuple[Settings, SyntheticRun]) -> dict[str, np.ndarray]:
    """The artifacts read back independently of the engine."""
    art = built[1].artifact_dir
    return {
        **load_file(str(art / rundir.SAE_DIR / rundir.SAE_WEIGHTS)),
        **load_file(str(art / rundir.VECTORS)),
    }


@pytest.fixture(scope="module")
def client(built: tuple[Settings, SyntheticRun]) -> Iterator[TestClient]:
    with TestClient(create_app(built[0])) as c:
        yield c


def expected_top(scores: np.ndarray, known: np.ndarray, n: int = 10) -> list[int]:
    """Reference ranking: mask known items, sort by score desc then index (full argsort)."""
    s = scores.astype(np.float64).copy()
    s[known] = -np.inf
    return [int(i) for i in np.lexsort((np.arange(s.size), -s))[:n]]


def ref_encode(a: dict[str, np.ndarray], x: np.ndarray, k: int) -> np.ndarray:
    """TopK SAE encode written out plainly (full sort), to check the engine's argpartition."""
    pre = (x - a["b_dec"]) @ a["W_enc"] + a["b_enc"]
    z = np.zeros_like(pre)
    keep = np.argsort(-pre)[:k]
    z[keep] = np.maximum(pre[keep], 0)
    return z


def active_latents(engine: SteeringEngine, user: int) -> np.ndarray:
    return np.flatnonzero(engine.encode(engine.user_vectors[user]))


# --- engine -----------------------------------------------------------------------------------


def test_encode_matches_reference(engine: SteeringEngine, arrays: dict[str, np.ndarray]) -> None:
    for u in range(engine.n_users):
        x = arrays["user_vectors"][u]
        np.testing.assert_allclose(engine.encode(x), ref_encode(arrays, x, 4), rtol=1e-5, atol=1e-6)


def test_neutral_error_preserving_is_exactly_the_model(
    engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    scores_UI = arrays["user_vectors"] @ arrays["item_embeddings"].T
    for u in range(engine.n_users):
        want = expected_top(scores_UI[u], engine.known_items(u))
        act = active_latents(engine, u)
        inactive = next(j for j in range(engine.n_latents) if j not in set(act))
        for edits in ([], [Edit(int(act[0]), 1.0), Edit(inactive, 0.0)]):
            r = engine.steer(u, edits, SteerMode.ERROR_PRESERVING)
            assert [it.idx for it in r.items] == want
            assert [it.idx for it in r.base_items] == want
            assert not r.entered and not r.left and not r.moved
            assert r.test_rank_after == r.test_rank_before


def test_test_item_rank_counts_ties_against(
    engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    scores_UI = arrays["user_vectors"] @ arrays["item_embeddings"].T
    for u in range(engine.n_users):
        s = scores_UI[u].copy()
        s[engine.known_items(u)] = -np.inf
        t = int(engine.text.test_items[u])
        assert engine.steer(u, []).test_rank_before == int((s >= s[t]).sum()) - 1


def test_replace_equals_reconstruction(
    engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    for u in range(engine.n_users):
        x = arrays["user_vectors"][u]
        x_hat = ref_encode(arrays, x, 4) @ arrays["W_dec"] + arrays["b_dec"]
        want = expected_top(arrays["item_embeddings"] @ x_hat, engine.known_items(u))
        r = engine.steer(u, [], SteerMode.REPLACE)
        assert [it.idx for it in r.items] == want
        # Replace mode's baseline is x̂ (the paper's 1×): with no edit nothing moves.
        assert [it.idx for it in r.base_items] == want
        assert r.entered == [] and r.left == [] and r.moved == []
        assert r.test_rank_after == r.test_rank_before


def test_replace_mode_diff_is_against_reconstruction_not_x(
    engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    """Issue 9 finding 1: x and x̂ disagree, so a diff against x mixed reconstruction error in."""
    differs = 0
    for u in range(engine.n_users):
        x = arrays["user_vectors"][u]
        x_hat = ref_encode(arrays, x, 4) @ arrays["W_dec"] + arrays["b_dec"]
        own = expected_top(arrays["item_embeddings"] @ x, engine.known_items(u))
        recon = expected_top(arrays["item_embeddings"] @ x_hat, engine.known_items(u))
        differs += own != recon
        r = engine.steer(u, [], SteerMode.REPLACE)
        assert [it.idx for it in r.base_items] == recon
    assert differs > 0, "the fixture must have users whose x and x̂ lists differ"
    seg = engine.steer_segment([Edit(0, 1.0)], SteerMode.REPLACE)
    assert seg.ndcg_after == pytest.approx(seg.ndcg_before)


def test_scaling_up_raises_scores_along_the_decoder_direction(
    engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    u = 3
    lat = int(active_latents(engine, u)[0])
    z_l = float(engine.encode(engine.user_vectors[u])[lat])
    along_I = arrays["item_embeddings"] @ arrays["W_dec"][lat]  # [I]: decoder direction · e_i
    base = engine.steered_scores(u, [])
    up = engine.steered_scores(u, [Edit(lat, 5.0)])
    free = np.isfinite(base)
    assert free.sum() < base.size  # known items are masked
    # Error-preserving: Δscore_i = (5 - 1) z_l (W_dec[l] · e_i), exactly linear.
    np.testing.assert_allclose(
        up[free] - base[free],
        4.0 * z_l * along_I[free],
        rtol=1e-3,
        atol=1e-3 * np.abs(base[free]).max(),
    )
    assert (up[free][along_I[free] > 0.1] > base[free][along_I[free] > 0.1]).all()


def test_absolute_value_sets_an_inactive_latent(engine: SteeringEngine) -> None:
    u = 0
    act = set(active_latents(engine, u))
    lat = next(j for j in range(12) if j not in act)  # a tag latent, so it has a concept
    r = engine.steer(u, [Edit(lat, 2.0)])
    (rep,) = r.edits
    assert rep.kind == "absolute" and rep.activation_before == 0 and rep.activation_after == 2.0
    base = engine.steered_scores(u, [])
    after = engine.steered_scores(u, [Edit(lat, 2.0)])
    delta = 2.0 * (engine.item_embeddings @ engine.W_dec[lat])
    free = np.isfinite(base)
    np.testing.assert_allclose(after[free] - base[free], delta[free], rtol=1e-3, atol=1e-3)


def test_concept_presence_follows_the_scale(engine: SteeringEngine) -> None:
    """Paper §8: +10x on a tag latent raises its concept in the top 10, -10x lowers it."""
    ups, downs, befores = [], [], []
    for u in range(engine.n_users):
        for lat in active_latents(engine, u):
            if engine.text.tfidf_concepts[lat] is None:
                continue
            up = engine.steer(u, [Edit(int(lat), 10.0)]).edits[0]
            down = engine.steer(u, [Edit(int(lat), -10.0)]).edits[0]
            ups.append(up.presence_after)
            downs.append(down.presence_after)
            befores.append(up.presence_before)
    assert len(ups) >= 10
    assert np.mean(ups) > np.mean(befores) > np.mean(downs)
    assert all(a >= b for a, b in zip(ups, downs, strict=True))


def test_concept_mask_matches_tokens_case_insensitively(engine: SteeringEngine) -> None:
    items = engine.concept_mask("ADVENTURE")
    assert items.any()
    np.testing.assert_array_equal(items, engine.concept_mask("adventure"))
    assert not engine.concept_mask("advent").any()  # whole tokens only


def test_concept_presence_is_what_tfidf_verification_counts() -> None:
    """Accents and hyphens: presence uses core.text.analyze over Item.text, as verification does
    (the old ``[a-z0-9]+`` matcher split "sci-fi" into "sci" + "fi" and "amélie" into "am" +
    "lie", so it counted "Sci Fi Nights" and "I Am the Lie" as carrying those concepts)."""
    texts = [
        "Alien | Horror, Sci-Fi",
        "Sci Fi Nights | Comedy",
        "Amélie | Comedy, Romance",
        "I Am the Lie | Drama",
        "Film-Noir Nights | Film-Noir",
    ]
    rows = SteeringRows(
        items=[ItemText(i, t.split(" | ")[0], t) for i, t in enumerate(texts)],
        users=[UserSplit(0, [0], 1, 2, "test")],
        tfidf_concepts=[(0, "sci-fi"), (1, "amelie")],
    )
    text = build_run_text("accents", rows, n_items=len(texts), n_users=1, n_latents=2)
    tokens = item_token_sets(texts)
    for concept in ("sci-fi", "amelie", "film-noir", "comedy"):
        verified = [concept in item for item in tokens]  # verify_term's test, item by item
        assert text.concept_mask(concept).tolist() == verified, concept
    assert text.concept_mask("sci-fi").tolist() == [True, False, False, False, False]
    assert text.concept_mask("Amélie").tolist() == [False, False, True, False, False]
    assert not text.concept_mask("the").any()  # a stop word names nothing


def test_diff_lists_entered_left_and_moved(engine: SteeringEngine) -> None:
    u = 5
    lat = int(active_latents(engine, u)[0])
    r = engine.steer(u, [Edit(lat, -10.0)])
    top = [it.idx for it in r.items]
    base = [it.idx for it in r.base_items]
    assert r.entered == [i for i in top if i not in base]
    assert r.left == [i for i in base if i not in top]
    for i, a, b in r.moved:
        assert base[a] == i and top[b] == i and a != b
    for it in r.items:
        if it.idx in base:
            assert it.base_rank == base.index(it.idx)


@pytest.mark.parametrize(
    ("edits", "error"),
    [
        ([Edit(10_000, 1.0)], UnknownLatentError),
        ([Edit(1, float("nan"))], SteeringError),
        ([Edit(1, 1.0), Edit(1, 2.0)], SteeringError),
        ([Edit(j, 0.0) for j in range(MAX_EDITS + 1)], SteeringError),
    ],
)
def test_engine_rejects_bad_edits(
    engine: SteeringEngine, edits: list[Edit], error: type[Exception]
) -> None:
    with pytest.raises(error):
        engine.steer(0, edits)


def test_engine_rejects_out_of_range_values(engine: SteeringEngine) -> None:
    u = 0
    act = int(active_latents(engine, u)[0])
    inactive = next(j for j in range(engine.n_latents) if j not in set(active_latents(engine, u)))
    with pytest.raises(SteeringError, match="scale"):
        engine.steer(u, [Edit(act, 10.5)])
    lim = engine.absolute_limit(inactive)
    engine.steer(u, [Edit(inactive, lim)])  # the limit itself is allowed
    with pytest.raises(SteeringError, match="absolute"):
        engine.steer(u, [Edit(inactive, lim * 1.01)])
    with pytest.raises(UnknownUserError):
        engine.steer(engine.n_users, [])


def test_segment_matches_per_user_steering(engine: SteeringEngine) -> None:
    lat = 0  # a tag latent
    seg = engine.steer_segment([Edit(lat, 6.0)])
    users = engine.text.test_side
    ranks = []
    n_active = 0
    for u in users:
        active = engine.encode(engine.user_vectors[u])[lat] > 0
        n_active += int(active)
        ranks.append(engine.steer(int(u), [Edit(lat, 6.0)] if active else []).test_rank_after)
    r = np.asarray(ranks)
    ndcg = np.where(r < 10, 1 / np.log2(r + 2), 0).mean()
    assert seg.n_users == users.size and seg.latents[0].n_active == n_active == seg.n_affected
    assert seg.ndcg_after == pytest.approx(ndcg)
    neutral = engine.steer_segment([Edit(lat, 1.0)])
    assert neutral.n_affected == 0 and neutral.ndcg_after == neutral.ndcg_before
    rep = seg.latents[0]
    assert rep.share_after is not None and rep.share_before is not None
    assert rep.share_after >= rep.share_before


# --- HTTP -------------------------------------------------------------------------------------


def post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def test_api_neutral_and_steered(client: TestClient, engine: SteeringEngine) -> None:
    u = 2
    r = post(client, f"/api/runs/{RUN}/users/{u}/steer", {"edits": []})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [it["idx"] for it in body["items"]] == [it["idx"] for it in body["base_items"]]
    assert body["items"][0]["title"] == engine.text.titles[body["items"][0]["idx"]]
    assert body["diff"]["changed"] is False
    lat = int(active_latents(engine, u)[0])
    r = post(
        client,
        f"/api/runs/{RUN}/users/{u}/steer",
        {"edits": [{"latent": lat, "value": -10}], "mode": "replace"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    want = engine.steer(u, [Edit(lat, -10.0)], SteerMode.REPLACE)
    assert [it["idx"] for it in body["items"]] == [it.idx for it in want.items]
    assert body["edits"][0]["kind"] == "scale" and body["mode"] == "replace"
    assert body["test_item"]["rank_after"] == want.test_rank_after


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/api/runs/nope/users/0/steer", {"edits": []}, "unknown run"),
        (f"/api/runs/{RUN}/users/999/steer", {"edits": []}, "no user 999"),
        (f"/api/runs/{RUN}/users/0/steer", {"edits": [{"latent": 64, "value": 1}]}, "latent 64"),
        (f"/api/runs/{RUN}/segment/steer", {"edits": [{"latent": 99, "value": 1}]}, "latent 99"),
    ],
)
def test_api_404(client: TestClient, path: str, body: Any, needle: str) -> None:
    r = post(client, path, body)
    assert r.status_code == 404, r.text
    assert needle in r.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"edits": [{"latent": 1, "value": "NaN"}]},
        {"edits": [{"latent": 1, "value": 1e300}]},
        {"edits": [{"latent": -1, "value": 1}]},
        {"edits": [{"latent": 1, "value": 1}, {"latent": 1, "value": 2}]},
        {"edits": [{"latent": j, "value": 0} for j in range(MAX_EDITS + 1)]},
        {"edits": {"latent": 1}},
        {"edits": [], "mode": "sideways"},
        {"edits": [], "extra": 1},
        [1, 2, 3],
    ],
)
def test_api_422_malformed(client: TestClient, body: Any) -> None:
    r = post(client, f"/api/runs/{RUN}/users/0/steer", body)
    assert r.status_code == 422, r.text


def test_api_nan_literal_is_422(client: TestClient) -> None:
    r = client.post(
        f"/api/runs/{RUN}/users/0/steer",
        content='{"edits": [{"latent": 1, "value": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


def test_api_422_out_of_range(client: TestClient, engine: SteeringEngine) -> None:
    act = int(active_latents(engine, 0)[0])
    r = post(client, f"/api/runs/{RUN}/users/0/steer", {"edits": [{"latent": act, "value": 11}]})
    assert r.status_code == 422 and "scale" in r.json()["detail"]
    inactive = next(j for j in range(64) if j not in set(active_latents(engine, 0)))
    big = engine.absolute_limit(inactive) * 2
    r = post(
        client, f"/api/runs/{RUN}/users/0/steer", {"edits": [{"latent": inactive, "value": big}]}
    )
    assert r.status_code == 422 and "absolute" in r.json()["detail"]
    r = post(client, f"/api/runs/{RUN}/segment/steer", {"edits": [{"latent": 0, "value": 12}]})
    assert r.status_code == 422
    r = post(client, f"/api/runs/{RUN}/segment/steer", {"edits": []})
    assert r.status_code == 422


def test_api_segment(client: TestClient) -> None:
    r = post(client, f"/api/runs/{RUN}/segment/steer", {"edits": [{"latent": 0, "value": 5}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_users"] == 20 and body["latents"][0]["concept"]
    assert set(body["ndcg@10"]) == {"before", "after", "change", "ci95"}


def test_user_page_and_json_twin(client: TestClient, engine: SteeringEngine) -> None:
    u = 4
    r = client.get(f"/runs/{RUN}/users/{u}")
    assert r.status_code == 200, r.text
    assert 'id="steer-panel"' in r.text and "steer.js" in r.text
    assert r.text.count('class="slider-row') == 4  # one per active latent (k = 4)
    j = client.get(f"/runs/{RUN}/users/{u}.json").json()
    assert [s["latent"] for s in j["sliders"]] == sorted(
        active_latents(engine, u).tolist(), key=lambda i: -engine.encode(engine.user_vectors[u])[i]
    )
    assert len(j["user"]["history"]) > 0 and j["steer"]["diff"]["changed"] is False


def test_shared_url_renders_the_steered_view(client: TestClient, engine: SteeringEngine) -> None:
    u = 4
    lat = int(active_latents(engine, u)[0])
    j = client.get(f"/runs/{RUN}/users/{u}.json?_edits={lat}:-10&_mode=replace").json()
    want = engine.steer(u, [Edit(lat, -10.0)], SteerMode.REPLACE)
    assert [it["idx"] for it in j["steer"]["items"]] == [it.idx for it in want.items]
    assert j["edits_query"] == f"{lat}:-10" and j["mode"] == "replace"
    frag = client.get(f"/runs/{RUN}/users/{u}?_edits={lat}:-10&_fragment=1")
    assert frag.status_code == 200 and "<html" not in frag.text and "steered-list" in frag.text
    assert client.get(f"/runs/{RUN}/users/{u}.json?_edits=oops").status_code == 422
    assert client.get(f"/runs/{RUN}/users/{u}.json?_edits=9999:1").status_code == 404


def test_latent_search(client: TestClient) -> None:
    r = client.get(f"/api/runs/{RUN}/steer/latents", params={"q": "Advent", "user": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [lat["tfidf_concept"] for lat in body["latents"]] == ["adventure"]
    assert body["latents"][0]["slider"]["kind"] in {"scale", "absolute"}
    assert client.get(f"/api/runs/{RUN}/steer/latents", params={"q": ""}).status_code == 422
    assert (
        client.get(f"/api/runs/{RUN}/steer/latents", params={"q": "a", "user": 999}).status_code
        == 404
    )


def test_engine_is_loaded_once(
    built: tuple[Settings, SyntheticRun], engine: SteeringEngine
) -> None:
    with session_factory(built[0].resolved_database_url)() as session:
        run = session.get(Run, RUN)
        assert run is not None
        assert engine_for_run(session, run) is engine


def test_missing_artifacts_are_loud(tmp_path: Path, engine: SteeringEngine) -> None:
    with pytest.raises(ArtifactError, match="cfg.json"):
        SteeringEngine.from_artifacts("x", tmp_path, engine.text)
