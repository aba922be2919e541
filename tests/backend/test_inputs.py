"""Every input bounded (issue 8 §4) and every error in one shape, documented (backend/errors.py).

Each test is named after a finding of the issue: ids past the database's integer range, page
numbers past any page, a 50,000-character filter and 50 MB bodies all answered 500s or grew the
server; the OpenAPI schema left most error statuses out; ``"latent": true`` was taken as 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.deps import DB_INT_MAX, TEXT_FILTER_MAX
from backend.steering.cache import clear_cache
from core import rundir
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.accounts import signed_in
from tests.backend.conftest import TEST_HOSTS, make_settings
from tests.backend.factories import publish_fixture
from tests.backend.synthetic_run import SyntheticRun, make_run

HUGE = "9223372036854775808"  # 2**63: past SQLite's INTEGER too
STEER_RUN = "inputs-steer"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def steer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, SyntheticRun]:
    """A steerable synthetic run (artifacts on disk) in a database of its own."""
    settings = make_settings(tmp_path_factory.mktemp("inputs"))
    migrate.upgrade(settings.resolved_database_url)
    run = make_run(
        settings.data_dir,
        session_factory(settings.resolved_database_url),
        STEER_RUN,
        n_items=200,
        n_users=20,
        d=8,
        n_latents=32,
        k=4,
        n_tags=8,
        seed=3,
    )
    clear_cache()
    return settings, run


@pytest.fixture(scope="module")
def steer_client(steer_run: tuple[Settings, SyntheticRun]) -> Iterator[TestClient]:
    with TestClient(create_app(steer_run[0])) as client:
        signed_in(client, "annotator")
        yield client


def assert_one_shape(body: Any, *, validation: bool = False) -> None:
    """``{"detail": str}`` plus, for validation problems, ``errors``: [{loc, msg, type}]."""
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
    assert body["detail"], body
    assert set(body) <= {"detail", "errors"}, body
    if validation:
        assert body["errors"], body
        for e in body["errors"]:
            assert set(e) == {"loc", "msg", "type"} and isinstance(e["msg"], str), e


# --- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        (f"/runs/fixture/latents/{HUGE}", f"no latent {HUGE}"),
        (f"/runs/fixture/latents/{HUGE}.json", f"no latent {HUGE}"),
        (f"/runs/fixture/latents/{DB_INT_MAX + 1}.json", f"no latent {DB_INT_MAX + 1}"),
    ],
)
def test_huge_latent_id_is_404_not_500(client: TestClient, path: str, needle: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert needle in response.json()["detail"]
    assert "it has" in response.json()["detail"]  # and says which ids exist


def test_huge_item_id_is_404_not_500(client: TestClient) -> None:
    for path in (f"/runs/fixture/items/{HUGE}", f"/runs/fixture/items/{HUGE}.json"):
        response = client.get(path)
        assert response.status_code == 404, response.text
        assert f"no item {HUGE}" in response.json()["detail"] or "has no" in response.text


def test_huge_user_id_is_404_not_500(steer_client: TestClient) -> None:
    for response in (
        steer_client.get(f"/runs/{STEER_RUN}/users/{HUGE}.json"),
        steer_client.post(f"/api/runs/{STEER_RUN}/users/{HUGE}/steer", json={"edits": []}),
        steer_client.get(f"/api/runs/{STEER_RUN}/steer/latents", params={"q": "a", "user": HUGE}),
    ):
        assert response.status_code == 404, response.text
        assert f"no user {HUGE}" in response.json()["detail"]


def test_huge_explain_id_is_404_not_500(fresh_settings: Settings) -> None:
    publish_fixture(session_factory(fresh_settings.resolved_database_url))
    app = create_app(fresh_settings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1"}))
    with TestClient(app) as client:
        signed_in(client, "annotator")
        response = client.post(f"/api/runs/fixture/latents/{HUGE}/explain")
    assert response.status_code == 404, response.text
    assert f"no latent {HUGE}" in response.json()["detail"]


def test_negative_id_is_422_in_the_one_shape(client: TestClient) -> None:
    response = client.get("/runs/fixture/latents/-1.json")
    assert response.status_code == 422
    assert_one_shape(response.json(), validation=True)
    assert response.json()["errors"][0]["loc"] == ["path", "idx"]


# --- paging and text filters ---------------------------------------------------------------------


def test_huge_page_number_clamps(client: TestClient) -> None:
    last = client.get("/runs/fixture/latents.json", params={"_size": 5})
    pages = last.json()["pages"]
    assert pages > 1  # the fixture has more latents than one page of 5
    want = client.get("/runs/fixture/latents.json", params={"_size": 5, "_page": pages}).json()
    for page in ("21679845525436329493528576", str(pages + 1), str(DB_INT_MAX)):
        response = client.get("/runs/fixture/latents.json", params={"_size": 5, "_page": page})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["filters"]["page"] == pages
        assert [row["idx"] for row in body["latents"]] == [row["idx"] for row in want["latents"]]
        assert body["links"]["next"] is None and body["links"]["prev"] is not None
    html = client.get("/runs/fixture/latents", params={"_page": "21679845525436329493528576"})
    assert html.status_code == 200


def test_long_q_on_list_page_is_422_not_500(client: TestClient) -> None:
    response = client.get("/runs/fixture/latents.json", params={"q": "a" * 50_000})
    assert response.status_code == 422, response.text[:300]
    assert_one_shape(response.json(), validation=True)
    assert f"at most {TEXT_FILTER_MAX} characters" in response.json()["detail"]
    # the cap is the same on the page and its twin, and a filter at the cap is answered
    page = client.get("/runs/fixture/latents", params={"q": "a" * (TEXT_FILTER_MAX + 1)})
    assert page.status_code == 422
    at_cap = client.get("/runs/fixture/latents.json", params={"q": "a" * TEXT_FILTER_MAX})
    assert at_cap.status_code == 200 and at_cap.json()["total"] == 0


def test_long_q_on_steer_search_has_the_same_cap(steer_client: TestClient) -> None:
    url = f"/api/runs/{STEER_RUN}/steer/latents"
    assert steer_client.get(url, params={"q": "a" * (TEXT_FILTER_MAX + 1)}).status_code == 422
    assert steer_client.get(url, params={"q": "a" * TEXT_FILTER_MAX}).status_code == 200


# --- bodies ---------------------------------------------------------------------------------------


def test_body_over_limit_is_413(steer_client: TestClient, steer_run: Any) -> None:
    limit = steer_run[0].max_body_bytes
    url = f"/api/runs/{STEER_RUN}/users/0/steer"
    padding = " " * limit  # valid JSON once the limit is lifted: the size alone is refused
    body = ('{"edits": []' + padding + "}").encode()
    response = steer_client.post(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_one_shape(response.json())
    assert f"at most {limit} bytes" in response.json()["detail"]
    # the same body under the limit is answered
    ok = steer_client.post(url, content=b'{"edits": []}' + b" " * 100, headers=JSON)
    assert ok.status_code == 200, ok.text


def test_body_over_limit_is_413_when_streamed_without_content_length(
    steer_client: TestClient, steer_run: Any
) -> None:
    limit = steer_run[0].max_body_bytes
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b'{"edits": []'
        for _ in range(limit // 1024 + 2):
            sent.append(1024)
            yield b" " * 1024
        yield b"}"

    response = steer_client.post(
        f"/api/runs/{STEER_RUN}/users/0/steer", content=chunks(), headers=JSON
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413, response.text
    assert_one_shape(response.json())


def test_body_over_limit_is_refused_before_the_route_runs(
    steer_client: TestClient, steer_run: Any
) -> None:
    """A route that never reads its body (the user page) is not run for an oversized one."""
    limit = steer_run[0].max_body_bytes
    response = steer_client.request(
        "GET", f"/runs/{STEER_RUN}/users/0.json", content=b"x" * (limit + 1)
    )
    assert response.status_code == 413
    assert_one_shape(response.json())


def test_steer_body_rejects_bool_latent_and_int_include_inactive(steer_client: TestClient) -> None:
    user_url = f"/api/runs/{STEER_RUN}/users/0/steer"
    segment_url = f"/api/runs/{STEER_RUN}/segment/steer"
    for url, body, loc in [
        (user_url, {"edits": [{"latent": True, "value": 1.0}]}, ["body", "edits", 0, "latent"]),
        (user_url, {"edits": [{"latent": "1", "value": 1.0}]}, ["body", "edits", 0, "latent"]),
        (user_url, {"edits": [{"latent": 1, "value": "1.5"}]}, ["body", "edits", 0, "value"]),
        (
            segment_url,
            {"edits": [{"latent": 1, "value": 1.0}], "include_inactive": 0},
            ["body", "include_inactive"],
        ),
    ]:
        response = steer_client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert_one_shape(response.json(), validation=True)
        assert [e["loc"] for e in response.json()["errors"]] == [loc]
    # the same bodies with the right JSON types are answered
    assert steer_client.post(user_url, json={"edits": [{"latent": 1, "value": 1}]}).is_success
    good = {"edits": [{"latent": 1, "value": 1.0}], "include_inactive": False}
    assert steer_client.post(segment_url, json=good).status_code == 200


# --- the one error shape and its documentation ----------------------------------------------------


def test_validation_error_has_the_one_shape(client: TestClient, steer_client: TestClient) -> None:
    response = client.get("/runs/fixture/latents.json", params={"_size": 0})
    assert response.status_code == 422
    assert_one_shape(response.json(), validation=True)
    assert "_size" in response.json()["detail"]
    # a NaN literal in a body (Python's json takes it) is refused without echoing it back
    nan = steer_client.post(
        f"/api/runs/{STEER_RUN}/users/0/steer",
        content=b'{"edits": [{"latent": 1, "value": NaN}]}',
        headers=JSON,
    )
    assert nan.status_code == 422
    assert_one_shape(json.loads(nan.text), validation=True)
    # the malformed _edits query: once a list-less string, still the one shape
    edits = steer_client.get(f"/runs/{STEER_RUN}/users/0.json", params={"_edits": "x"})
    assert edits.status_code == 422 and "_edits" in edits.json()["detail"]
    assert_one_shape(edits.json())
    # a browser navigating to a page gets the message as a page
    page = client.get("/runs/fixture/latents?_size=0", headers={"accept": "text/html"})
    assert page.status_code == 422 and "text/html" in page.headers["content-type"]
    assert "_size" in page.text


def test_unknown_path_and_method_have_the_one_shape(client: TestClient) -> None:
    assert_one_shape(client.get("/nowhere.json").json())
    response = client.put("/runs/fixture/latents.json")
    assert response.status_code == 405
    assert_one_shape(response.json())


def test_unexpected_error_is_500_without_a_trace(fresh_settings: Settings) -> None:
    app = create_app(fresh_settings)

    @app.get("/boom.json")
    def boom() -> None:
        raise RuntimeError(f"secret internals at {fresh_settings.data_dir}")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom.json")
    assert response.status_code == 500
    assert_one_shape(response.json())
    assert "secret" not in response.text and str(fresh_settings.data_dir) not in response.text


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_openapi_documents_every_error_status_with_one_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    shape = schema["components"]["schemas"]["ErrorOut"]
    assert shape["required"] == ["detail"] and shape["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    expected_extra = {
        "/api/runs/{run_id}/latents/{idx}/explain": {401, 403, 404, 409, 429, 503},
        "/api/jobs/{job_id}/cancel": {401, 403, 404, 409},
        "/api/jobs/{job_id}": {404},
        "/api/runs/{run_id}/users/{idx}/steer": {401, 403, 404, 503},
        "/api/runs/{run_id}/segment/steer": {401, 403, 404, 503},
        "/api/runs/{run_id}/steer/latents": {404, 503},
        "/runs/{run_id}/users/{idx}.json": {404, 503},
        "/runs/{run_id}/latents.json": {404},
        "/runs/{run_id}/items/{idx}.json": {404},
    }
    checked = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {int(code): r for code, r in operation["responses"].items() if code[0] in "45"}
            assert {400, 413, 422, 500} <= set(errors), (method, path, sorted(errors))
            if "{run_id}" in path:
                assert 404 in errors, (method, path)
            assert expected_extra.get(path, set()) <= set(errors), (method, path, sorted(errors))
            for code, response in errors.items():
                content = response["content"]["application/json"]["schema"]
                assert _refs(content) == {"#/components/schemas/ErrorOut"}, (path, code)
            checked += 1
    assert checked >= 15  # the pages, their JSON twins and the API


# --- broken artifacts (issue 8 §5, the HTTP half) ----------------------------------------------


def test_missing_vectors_gives_503_page_naming_run_and_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    run = make_run(
        tmp_path, session_factory(settings.resolved_database_url), "broken-run",
        n_items=50, n_users=10, d=4, n_latents=8, k=2, n_tags=4,
    )  # fmt: skip
    clear_cache()
    (run.artifact_dir / rundir.VECTORS).unlink()
    with TestClient(create_app(settings)) as client:
        as_json = client.get("/runs/broken-run/users/0.json")
        as_page = client.get("/runs/broken-run/users/0", headers={"accept": "text/html"})
    assert as_json.status_code == 503 and as_page.status_code == 503
    assert_one_shape(as_json.json())
    detail = as_json.json()["detail"]
    assert "broken-run" in detail and rundir.VECTORS in detail
    assert "text/html" in as_page.headers["content-type"] and rundir.VECTORS in as_page.text
    for body in (as_json.text, as_page.text):
        assert str(tmp_path) not in body and "Traceback" not in body


# --- the same bounds on PostgreSQL, whose INTEGER is 32-bit ---------------------------------------


@pytest.mark.postgres
def test_huge_ids_and_pages_are_not_500_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """2**31 fits SQLite's INTEGER but not PostgreSQL's: it must never reach the query."""
    migrate.upgrade(postgres_url)
    publish_fixture(session_factory(postgres_url), run_id="pg-inputs")
    settings = Settings(data_dir=tmp_path, database_url=postgres_url, allowed_hosts=TEST_HOSTS)
    with TestClient(create_app(settings)) as client:
        for idx in (DB_INT_MAX + 1, HUGE):
            for kind in ("latents", "items"):
                response = client.get(f"/runs/pg-inputs/{kind}/{idx}.json")
                assert response.status_code == 404, response.text
        assert client.get(f"/runs/pg-inputs/latents/{DB_INT_MAX}.json").status_code == 404
        paged = client.get("/runs/pg-inputs/latents.json", params={"_page": HUGE, "_size": 5})
        assert paged.status_code == 200 and paged.json()["filters"]["page"] == 4  # 20 latents
        capped = client.get("/runs/pg-inputs/latents.json", params={"q": "%" * TEXT_FILTER_MAX})
        assert capped.status_code == 200 and capped.json()["total"] == 0
