"""The study routes (issue 10 §1–§4): who sees what (every route × anonymous, annotator,
annotator not assigned, admin), blind annotation, ratings by form, results and exports."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from backend.auth import CSRF_HEADER
from core import studies
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account
from tests.backend.accounts import create_account, signed_in, signed_out
from tests.backend.factories import publish_fixture


@pytest.fixture
def app_client(fresh_settings: Settings) -> Iterator[TestClient]:
    publish_fixture(session_factory(fresh_settings.resolved_database_url))
    with TestClient(create_app(fresh_settings)) as client:
        yield client


def _sessions(client: TestClient) -> Any:
    return client.app.state.sessions  # type: ignore[attr-defined]


def make_study(client: TestClient, annotators: list[str]) -> int:
    study_id = studies.create_study(_sessions(client), "fixture", "pilot", size=100, seed=1)
    studies.assign(_sessions(client), study_id, annotators)
    return study_id


def test_admin_creates_a_study_by_form_and_assigns_an_annotator(app_client: TestClient) -> None:
    create_account(_sessions(app_client), "annotator", "ann")
    signed_in(app_client, "admin")
    page = app_client.get("/studies")
    assert page.status_code == 200 and 'action="/studies"' in page.text
    form = {
        "run_id": "fixture",
        "name": "pilot",
        "size": "3",
        "methods": "both",
        "annotators": "ann",
    }
    made = app_client.post("/studies", data=form, follow_redirects=False)
    assert made.status_code == 303
    url = made.headers["location"]
    detail = app_client.get(f"{url}.json").json()
    assert detail["study"]["size"] == 3 and detail["annotators"] == [
        {"username": "ann", "rated": 0, "skipped": 0}
    ]
    bad = app_client.post("/studies", data={**form, "min_confidence": "1", "methods": "tfidf"})
    assert bad.status_code == 400 and "lower the minimum" in bad.json()["detail"]
    assert app_client.post(f"{url}/annotators", data={"username": "nobody"}).status_code == 400


def test_annotation_page_is_blind(app_client: TestClient) -> None:
    signed_in(app_client, "annotator", "ann")
    study_id = make_study(app_client, ["ann"])
    html = app_client.get(f"/studies/{study_id}/annotate?n=0").text
    body = app_client.get(f"/studies/{study_id}/annotate.json?n=0").json()
    item = studies_items(app_client, study_id)[0]
    assert body["concept"] == item.text and item.text in html
    for hidden in ("confidence", "tfidf", "llm", "null_p95", "method", "human_mean"):
        assert hidden not in str(body).lower(), hidden
    for hidden in ("confidence", "tf-idf", "tfidf", "llm", "/latents/"):
        assert hidden not in html.lower(), hidden
    assert set(body["examples"]) == {"construction", "verification"}
    assert "/static/annotate.js" in html and 'name="csrf_token"' in html


def studies_items(client: TestClient, study_id: int) -> list[Any]:
    from core import study_reads

    with _sessions(client)() as session:
        return study_reads.items(session, study_id)


def test_rating_by_form_moves_on_changes_and_freezes_when_closed(app_client: TestClient) -> None:
    signed_in(app_client, "annotator", "ann")
    study_id = make_study(app_client, ["ann"])
    n = len(studies_items(app_client, study_id))
    first = app_client.post(
        f"/studies/{study_id}/ratings", data={"position": "0", "value": "3"}, follow_redirects=False
    )
    assert (
        first.status_code == 303
        and first.headers["location"] == f"/studies/{study_id}/annotate?n=1"
    )
    skip = app_client.post(
        f"/studies/{study_id}/ratings", data={"position": "1", "skip_reason": "examples unclear"},
        headers={"accept": "application/json"},
    )  # fmt: skip
    assert skip.status_code == 200 and skip.json()["created"]
    again = app_client.post(
        f"/studies/{study_id}/ratings",
        data={"position": "0", "value": "4"},
        headers={"accept": "application/json"},
    )
    assert again.json() == {**again.json(), "created": False, "changed": True}
    assert app_client.get(f"/studies/{study_id}/annotate.json").json()["position"] == (
        2 if n > 2 else 0
    )
    assert app_client.get(f"/studies/{study_id}/annotate.json?n=0").json()["mine"] == {
        "value": 4,
        "skip_reason": None,
    }
    assert (
        app_client.post(f"/studies/{study_id}/ratings", data={"position": "0"}).status_code == 400
    )
    assert (
        app_client.post(
            f"/studies/{study_id}/ratings", data={"position": "0", "value": "5"}
        ).status_code
        == 422
    )
    assert (
        app_client.post(
            f"/studies/{study_id}/ratings", data={"position": str(n), "value": "1"}
        ).status_code
        == 404
    )
    studies.set_status(_sessions(app_client), study_id, "closed")
    closed = app_client.post(f"/studies/{study_id}/ratings", data={"position": "0", "value": "1"})
    assert closed.status_code == 409 and "closed" in closed.json()["detail"]


def test_results_show_agreement_and_export(app_client: TestClient) -> None:
    for name in ("a1", "a2"):
        create_account(_sessions(app_client), "annotator", name)
    study_id = make_study(app_client, ["a1", "a2"])
    items = studies_items(app_client, study_id)
    with _sessions(app_client)() as session:
        ids = dict(session.execute(select(Account.username, Account.id)).tuples().all())
    for k, item in enumerate(items):
        studies.rate(
            _sessions(app_client), study_id, ids["a1"], item.latent_idx, item.concept_id, 1 + k % 4
        )
        studies.rate(
            _sessions(app_client),
            study_id,
            ids["a2"],
            item.latent_idx,
            item.concept_id,
            1 + (k + k // 3) % 4,
        )
    signed_in(app_client, "admin")
    res = app_client.get(f"/studies/{study_id}/results.json").json()
    assert res["raters"] == ["a1", "a2"] and res["overall"]["n"] == 2 * len(items)
    assert set(res["per_method"]) == {i.method for i in items}
    assert res["agreement"]["cohen"]["pairs"][0]["unweighted"]["n"] == len(items)
    assert res["figures"]["human_vs_automatic"]["data"]
    html = app_client.get(f"/studies/{study_id}/results").text
    assert "Fleiss" in html and "Krippendorff" in html and 'id="human-vs-automatic"' in html
    rows = list(
        csv.DictReader(io.StringIO(app_client.get(f"/studies/{study_id}/results.csv").text))
    )
    assert len(rows) == 2 * len(items) and {r["annotator"] for r in rows} == {"a1", "a2"}


# --- the authorisation matrix for the study routes ------------------------------------------

ROLES = ("anonymous", "annotator", "unassigned", "admin")
Call = Callable[[TestClient, int], Any]


def _post(path: str, **data: str) -> Call:
    return lambda c, s: c.post(path.format(s=s), data=data, follow_redirects=False)


def _get(path: str) -> Call:
    return lambda c, s: c.get(path.format(s=s))


# route -> (request, expected status for anonymous, assigned annotator, unassigned, admin)
ROUTES: dict[str, tuple[Call, tuple[int, int, int, int]]] = {
    "GET /studies": (_get("/studies"), (401, 200, 200, 200)),
    "GET /studies.json": (_get("/studies.json"), (401, 200, 200, 200)),
    "GET /studies/{id}": (_get("/studies/{s}"), (401, 200, 403, 200)),
    "GET /studies/{id}.json": (_get("/studies/{s}.json"), (401, 200, 403, 200)),
    "GET annotate": (_get("/studies/{s}/annotate"), (401, 200, 403, 403)),
    "GET annotate.json": (_get("/studies/{s}/annotate.json"), (401, 200, 403, 403)),
    "POST ratings": (_post("/studies/{s}/ratings", position="0", value="2"), (401, 303, 403, 403)),
    "GET results": (_get("/studies/{s}/results"), (401, 403, 403, 200)),
    "GET results.json": (_get("/studies/{s}/results.json"), (401, 403, 403, 200)),
    "GET results.csv": (_get("/studies/{s}/results.csv"), (401, 403, 403, 200)),
    "POST /studies": (_post("/studies", run_id="fixture", name="x"), (401, 403, 403, 303)),
    "POST annotators": (
        _post("/studies/{s}/annotators", username="someone"),
        (401, 403, 403, 303),
    ),
    "POST status": (_post("/studies/{s}/status", status="open"), (401, 403, 403, 303)),
}


def test_study_authorisation_matrix(app_client: TestClient) -> None:
    create_account(_sessions(app_client), "annotator", "someone")
    study_id = make_study(app_client, [])
    failures = []
    for name, (call, expected) in ROUTES.items():
        for role in ROLES:
            with TestClient(app_client.app) as client:
                if role != "anonymous":
                    login = signed_in(client, "admin" if role == "admin" else "annotator")
                    if role == "annotator":
                        studies.assign(_sessions(app_client), study_id, [login.account.username])
                status = call(client, study_id).status_code
            want = expected[ROLES.index(role)]
            if status != want:
                failures.append(f"{name} as {role}: {status}, expected {want}")
    assert not failures, failures
    with TestClient(app_client.app) as client:
        signed_in(client, "admin")
        assert client.get("/studies/999999.json").status_code == 404


def test_study_posts_without_the_csrf_token_are_refused(app_client: TestClient) -> None:
    login = signed_in(app_client, "annotator", "ann")
    study_id = make_study(app_client, ["ann"])
    app_client.headers.pop(CSRF_HEADER)
    url = f"/studies/{study_id}/ratings"
    assert app_client.post(url, data={"position": "0", "value": "2"}).status_code == 403
    assert (
        app_client.post(
            url, data={"position": "0", "value": "2", "csrf_token": "x" * 43}
        ).status_code
        == 403
    )
    ok = app_client.post(
        url,
        data={"position": "0", "value": "2", "csrf_token": login.csrf_token},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    signed_out(app_client)
    admin = signed_in(app_client, "admin")
    app_client.headers.pop(CSRF_HEADER)
    for path, data in (
        ("/studies", {"run_id": "fixture", "name": "x"}),
        (f"/studies/{study_id}/status", {"status": "closed"}),
    ):
        assert app_client.post(path, data=data).status_code == 403
    assert re.search(
        "open",
        app_client.get(f"/studies/{study_id}.json", headers={CSRF_HEADER: admin.csrf_token}).text,
    )


def test_closed_study_shows_on_the_latent_page_and_in_the_run_report(
    app_client: TestClient,
) -> None:
    for name in ("a1", "a2"):
        create_account(_sessions(app_client), "annotator", name)
    study_id = make_study(app_client, ["a1", "a2"])
    item = studies_items(app_client, study_id)[0]
    with _sessions(app_client)() as session:
        ids = dict(session.execute(select(Account.username, Account.id)).tuples().all())
    for name, value in (("a1", 2), ("a2", 3)):
        studies.rate(
            _sessions(app_client), study_id, ids[name], item.latent_idx, item.concept_id, value
        )
    latent_url = f"/runs/fixture/latents/{item.latent_idx}"
    assert app_client.get(f"{latent_url}.json").json()["concepts"][item.method]["human"] is None
    report = app_client.get("/runs/fixture.json").json()["report"]["human"]
    assert report["rows"] == [] and report["paper"]["rows"][0]["cells"][2]["value"] == 3.89
    studies.set_status(_sessions(app_client), study_id, "closed")  # only closed studies count
    human = app_client.get(f"{latent_url}.json").json()["concepts"][item.method]["human"]
    assert human == {"mean": 2.5, "n": 2}
    assert "mean human rating 2.5 / 4" in app_client.get(latent_url).text
    report = app_client.get("/runs/fixture.json").json()["report"]["human"]
    cells = report["rows"][0]["cells"]
    assert [c["value"] for c in cells[:3]] == [
        len({i.latent_idx for i in studies_items(app_client, study_id)}),
        2,
        2.5,
    ]
    assert 'id="human"' in app_client.get("/runs/fixture").text
