"""Issue 11: steering at a glance and the "why this item" lens, on a synthetic steerable run.

- why this item: each steered item's score split into the latents' parts z'_l (W_dec[l] · e),
  the decoder bias and the SAE's error term, checked against the artifacts read back with plain
  numpy, and adding up to the score the list shows (1e-5);
- the segment panel's 95% CIs (bootstrap over users): they contain the point estimate and the
  same request gives the same interval;
- a bad ``_edits`` is refused beside the slider (the page intact, 4xx, the one error shape);
- the before / after lists side by side, entered / left / moved marked on both (a constructed
  case through the JSON and the template, and a real steer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.deps import templates
from backend.routes.steer_views import result_json
from backend.steering import (
    Edit,
    RankedItem,
    SteeringEngine,
    SteerMode,
    SteerResult,
    clear_cache,
)
from core.settings import Settings
from tests.backend.synthetic_run import SyntheticRun, run_arrays, run_engine, steerable_run

RUN = "glance-test"
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SyntheticRun]:
    built = steerable_run(tmp_path_factory.mktemp("glance"), RUN, seed=3)
    clear_cache()
    return built


@pytest.fixture(scope="module")
def engine(built: tuple[Settings, SyntheticRun]) -> SteeringEngine:
    return run_engine(built[0], RUN)


@pytest.fixture(scope="module")
def arrays(built: tuple[Settings, SyntheticRun]) -> dict[str, np.ndarray]:
    return run_arrays(built[1])


@pytest.fixture(scope="module")
def client(built: tuple[Settings, SyntheticRun]) -> Iterator[TestClient]:
    with TestClient(create_app(built[0])) as c:
        yield c


def active(engine: SteeringEngine, user: int) -> list[int]:
    z = engine.encode(engine.user_vectors[user])
    return sorted(map(int, np.flatnonzero(z)), key=lambda i: -z[i])


# --- why this item ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["error_preserving", "replace"])
@pytest.mark.parametrize("scale", [None, -10.0, 4.0])
def test_why_this_item_parts_add_up_to_the_score_shown(
    client: TestClient, engine: SteeringEngine, mode: str, scale: float | None
) -> None:
    for user in (0, 3, 7):
        edits = "" if scale is None else f"&_edits={active(engine, user)[0]}:{scale:g}"
        page = client.get(f"/runs/{RUN}/users/{user}.json?_mode={mode}{edits}").json()
        shown = {it["idx"]: it["score"] for it in page["steer"]["items"]}
        assert [w["idx"] for w in page["why"]] == list(shown)
        for w in page["why"]:
            parts = [p["contribution"] for p in w["latents"]] + [w["bias"], w["error"]]
            assert sum(parts) + w["item_bias"] == pytest.approx(shown[w["idx"]], abs=1e-5)
            assert w["score"] == shown[w["idx"]]
            if mode == "replace":
                assert w["error"] == 0.0  # the reconstruction has no error term


def test_why_parts_are_the_sae_terms(
    client: TestClient, engine: SteeringEngine, arrays: dict[str, np.ndarray]
) -> None:
    """Each part recomputed from the artifacts in float64: z'_l (W_dec[l]·e), b_dec·e,
    (x − x̂)·e. The error and bias terms are not negligible here, so dropping one would fail."""
    user, lat = 5, active(engine, 5)[1]
    page = client.get(f"/runs/{RUN}/users/{user}.json?_edits={lat}:3").json()
    x = arrays["user_vectors"][user]
    pre = (x - arrays["b_dec"]) @ arrays["W_enc"] + arrays["b_enc"]
    z = np.zeros_like(pre)
    keep = np.argsort(-pre)[:4]
    z[keep] = np.maximum(pre[keep], 0)
    x_hat = z @ arrays["W_dec"] + arrays["b_dec"]
    z2 = z.copy()
    z2[lat] *= 3
    errors, biases = [], []
    for w in page["why"]:
        e = arrays["item_embeddings"][w["idx"]]
        got = {p["latent"]: p["contribution"] for p in w["latents"]}
        assert set(got) == set(map(int, np.flatnonzero(z2)))
        for latent, value in got.items():
            want = z2[latent] * arrays["W_dec"][latent] @ e  # the engine encodes in float32
            assert value == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert w["bias"] == pytest.approx(arrays["b_dec"] @ e, abs=1e-6)
        assert w["error"] == pytest.approx((x - x_hat) @ e, abs=1e-5)
        errors.append(abs(w["error"]))
        biases.append(abs(w["bias"]))
        contributions = [abs(p["contribution"]) for p in w["latents"]]
        assert contributions == sorted(contributions, reverse=True)
    assert max(errors) > 1e-2 and max(biases) > 1e-3


def test_why_json_answers_for_any_item(client: TestClient, engine: SteeringEngine) -> None:
    user = 2
    lat = active(engine, user)[0]
    item = int(engine.known_items(user)[0])  # even an item of the history has a score
    r = client.get(
        f"/runs/{RUN}/users/{user}/why.json", params={"item": item, "_edits": f"{lat}:2"}
    )
    assert r.status_code == 200, r.text
    body = r.json()["item"]
    _, _, _, x2 = engine.steered_code(user, [Edit(lat, 2.0)])
    want = float(engine.item_embeddings[item] @ x2)
    got = sum(p["contribution"] for p in body["latents"]) + body["bias"] + body["error"]
    assert body["score"] == pytest.approx(want, abs=1e-6) and got == pytest.approx(want, abs=1e-5)
    assert client.get(f"/runs/{RUN}/users/{user}/why.json?item=400").status_code == 404
    bad = client.get(f"/runs/{RUN}/users/{user}/why.json", params={"item": 1, "_edits": "x"})
    assert bad.status_code == 422 and "latent:value" in bad.json()["detail"]


def test_user_page_renders_why_tables_and_the_chart_data(client: TestClient) -> None:
    r = client.get(f"/runs/{RUN}/users/1", headers=HTML)
    assert r.status_code == 200
    assert 'id="why-panel"' in r.text and 'id="why-data"' in r.text
    assert r.text.count('class="metrics why-table"') == 10 and "plotly" in r.text


# --- segment CIs ------------------------------------------------------------------------------


def test_segment_cis_contain_the_point_estimate_and_are_seeded(engine: SteeringEngine) -> None:
    edits = [Edit(0, 8.0), Edit(1, -5.0)]  # active for 6 test users each
    for include_inactive in (False, True):
        a = engine.steer_segment(edits, include_inactive=include_inactive)
        b = engine.steer_segment(edits, include_inactive=include_inactive)
        assert a == b  # the same request, the same intervals (seeded)
        checks = [(a.ndcg_before, a.ndcg_after, a.ndcg_change_ci)]
        checks.append((a.ndcg_affected_before, a.ndcg_affected_after, a.ndcg_affected_change_ci))
        for lat in a.latents:
            checks.append((lat.presence_before, lat.presence_after, lat.presence_change_ci))
            checks.append((lat.share_before, lat.share_after, lat.share_change_ci))
        for before, after, ci in checks:
            assert before is not None and after is not None and ci is not None
            assert ci[0] <= after - before <= ci[1]
        lo, hi = a.ndcg_change_ci or (0, 0)
        assert lo < hi  # a real interval, not the point repeated
    off = engine.steer_segment([Edit(0, 8.0)], include_inactive=True)
    on = engine.steer_segment([Edit(0, 8.0)], include_inactive=False)
    assert off.latents[0].n_set > on.latents[0].n_set == on.latents[0].n_active


def test_segment_api_carries_the_cis(client: TestClient) -> None:
    r = client.post(f"/api/runs/{RUN}/segment/steer", json={"edits": [{"latent": 0, "value": 6}]})
    assert r.status_code == 200, r.text
    body = r.json()
    for change in (body["ndcg@10"], body["latents"][0]["presence"], body["latents"][0]["share"]):
        lo, hi = change["ci95"]
        assert change["change"] == pytest.approx(change["after"] - change["before"])
        assert lo <= change["change"] <= hi


def test_user_page_explains_also_where_inactive(client: TestClient) -> None:
    text = client.get(f"/runs/{RUN}/users/0", headers=HTML).text
    assert 'id="segment-inactive-help"' in text and "switched <em>on</em>" in text
    assert "95% confidence interval" in text


# --- bad slider values are refused beside the slider --------------------------------------------


def _row(html: str, latent: int) -> str:
    """The slider row of ``latent``: from its opening tag to the next row (or the search)."""
    start = html.index(f'data-latent="{latent}"')
    ends = [
        i for i in (html.find('class="slider-row', start), html.find("<h3>Add", start)) if i > 0
    ]
    return html[html.rindex("<div", 0, start) : min(ends)]


def test_bad_edits_value_is_refused_beside_the_slider(
    client: TestClient, engine: SteeringEngine
) -> None:
    user = 4
    lat = active(engine, user)[0]
    page = client.get(f"/runs/{RUN}/users/{user}?_edits={lat}:50", headers=HTML)
    assert page.status_code == 422
    row = _row(page.text, lat)
    assert "refused" in row and 'id="steer-refusal"' in row and "got 50" in row
    # The rest of the page is intact: sliders, the (unsteered) list, the history.
    assert page.text.count('class="slider-row') == 4
    assert 'id="steered-list"' in page.text and "<h2>History" in page.text
    twin = client.get(f"/runs/{RUN}/users/{user}.json?_edits={lat}:50")
    assert twin.status_code == 422
    body = twin.json()
    assert set(body) == {"detail", "errors"} and body["errors"][0]["loc"] == [
        "query",
        "_edits",
        lat,
    ]
    frag = client.get(f"/runs/{RUN}/users/{user}?_edits={lat}:50&_fragment=1", headers=HTML)
    assert frag.status_code == 422 and frag.json()["errors"][0]["loc"][2] == lat


@pytest.mark.parametrize(
    ("edits", "status", "needle"),
    [("oops", 422, "latent:value"), ("63:1,63:2", 422, "twice"), ("9999:1", 404, "no latent 9999")],
)
def test_malformed_edits_keep_the_page_with_the_message_by_the_sliders(
    client: TestClient, edits: str, status: int, needle: str
) -> None:
    page = client.get(f"/runs/{RUN}/users/4?_edits={edits}", headers=HTML)
    assert page.status_code == status
    assert 'id="steer-refusal"' in page.text and needle in page.text
    assert 'id="steer-panel"' in page.text and 'id="steered-list"' in page.text
    twin = client.get(f"/runs/{RUN}/users/4.json?_edits={edits}")
    assert twin.status_code == status and needle in twin.json()["detail"]


# --- one numbering, side by side, marks -------------------------------------------------------


def test_heading_numbers_users_as_the_url_does(client: TestClient) -> None:
    text = client.get(f"/runs/{RUN}/users/7", headers=HTML).text
    assert re.search(r"<h1>User 7 <span[^>]*>\(id u7 in the dataset\)</span></h1>", text), text[
        :2000
    ]


def _constructed(engine: SteeringEngine) -> SteerResult:
    """Before [10, 11, 12, 13], after [11, 14, 10, 13]: 11 up, 10 down, 12 left, 14 entered."""
    base = [10, 11, 12, 13]
    after = [11, 14, 10, 13]
    return SteerResult(
        user=0,
        mode=SteerMode.ERROR_PRESERVING,
        items=[
            RankedItem(r, i, 1.0 - r / 10, base.index(i) if i in base else None)
            for r, i in enumerate(after)
        ],
        base_items=[RankedItem(r, i, 1.0 - r / 10, r) for r, i in enumerate(base)],
        entered=[14],
        left=[12],
        moved=[(11, 1, 0), (10, 0, 2)],
        edits=[],
        test_item=14,
        test_rank_before=30,
        test_rank_after=1,
    )


def test_side_by_side_marks_entered_left_moved_on_both_lists(engine: SteeringEngine) -> None:
    j = result_json(engine, _constructed(engine))
    assert [(it["idx"], it["mark"]) for it in j["items"]] == [
        (11, "moved"), (14, "entered"), (10, "moved"), (13, "same"),
    ]  # fmt: skip
    assert [(it["idx"], it["mark"], it["after_rank"]) for it in j["base_items"]] == [
        (10, "moved", 2), (11, "moved", 0), (12, "left", None), (13, "same", 3),
    ]  # fmt: skip
    # The template shows both, each item with its mark in words.
    j["edits"] = [{"latent": 0, "value": 2.0, "kind": "scale", "activation_before": 1.0,
                   "activation_after": 2.0, "concept": None, "presence_before": None,
                   "presence_after": None}]  # fmt: skip
    html = templates.get_template("_steer_results.html").render(
        steer=j, why=[], run={"id": RUN, "item_name": "movie"}
    )
    before = html[html.index('id="base-list"') : html.index('id="steered-list"')]
    after = html[html.index('id="steered-list"') :]
    assert re.search(r'data-idx="12" data-mark="left".*?>left</span>', before, re.S)
    assert re.search(r'data-idx="10" data-mark="moved".*?moved → #3', before, re.S)
    assert re.search(r'data-idx="14" data-mark="entered".*?entered</span>', after, re.S)
    assert re.search(r'data-idx="11" data-mark="moved".*?▲1 from #2', after, re.S)
    assert re.search(r'data-idx="10" data-mark="moved".*?▼2 from #1', after, re.S)
    assert 'data-idx="13" data-mark="same"' in before and 'data-idx="13" data-mark="same"' in after
    assert re.search(r'data-idx="14".*?>test movie</span>', after, re.S)  # the badge says what


def test_real_steer_marks_match_the_diff(client: TestClient, engine: SteeringEngine) -> None:
    user = 6
    lat = active(engine, user)[0]
    j: dict[str, Any] = client.get(f"/runs/{RUN}/users/{user}.json?_edits={lat}:-10").json()
    steer = j["steer"]
    assert {it["idx"] for it in steer["items"] if it["mark"] == "entered"} == {
        d["idx"] for d in steer["diff"]["entered"]
    }
    assert {it["idx"] for it in steer["base_items"] if it["mark"] == "left"} == {
        d["idx"] for d in steer["diff"]["left"]
    }
    assert steer["diff"]["entered"], "the steer should change the list"
    html = client.get(f"/runs/{RUN}/users/{user}?_edits={lat}:-10", headers=HTML).text
    assert (
        'id="base-list"' in html and 'id="steered-list"' in html and "<details><summary" not in html
    )


def test_the_steering_posts_are_the_first_routes_tried(
    client: TestClient, built: tuple[Settings, SyntheticRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot API path is matched by the first route the app tries (backend/routes/steer.py,
    ``api_router``), not after every page's route; the reference: FastAPI's own route matching,
    counted."""
    from fastapi import routing

    context = getattr(routing, "_EffectiveRouteContext", None)
    if context is None:
        pytest.skip("this FastAPI matches routes another way")
    tried: list[str] = []
    real = context.matches

    def counting(self: Any, scope: Any) -> Any:
        tried.append(getattr(self, "path_format", "?"))
        return real(self, scope)

    monkeypatch.setattr(context, "matches", counting)
    user = int(built[1].test_users[0])
    r = client.post(f"/api/runs/{RUN}/users/{user}/steer", json={"edits": []})
    assert r.status_code == 200, r.text
    # (FastAPI may try a route twice: once to pick the router, once inside it)
    assert set(tried) == {"/api/runs/{run_id}/users/{idx}/steer"}
    tried.clear()
    r = client.post(f"/api/runs/{RUN}/segment/steer", json={"edits": [{"latent": 0, "value": 2}]})
    assert r.status_code == 200, r.text
    assert set(tried) == {
        "/api/runs/{run_id}/users/{idx}/steer",
        "/api/runs/{run_id}/segment/steer",
    }
