"""The small findings of an outside test (docs/architecture.md, "Text, names and errors"): a
CSV export no spreadsheet evaluates, usernames and study names that read as what they hold,
control and bidi characters shown spelled out, 503 + Retry-After while the database is down,
OPTIONS and 405 listing every method of a path, and an OpenAPI schema that states what the
server enforces. Each test is named after its finding."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.auth import SESSION_COOKIE
from backend.serve import background_server
from core import accounts, studies
from core.accounts import AccountError
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import Account, Concept, Study, StudyItem
from tests.backend.accounts import PASSWORD, create_account, signed_in
from tests.backend.conftest import TEST_HOSTS, make_settings
from tests.backend.factories import publish_fixture
from tests.backend.synthetic_run import steerable_run
from tests.postgres_server import pg_bin, postgres_server

HTML = {"accept": "text/html"}


def _sessions(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.sessions  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def admin(app_client: TestClient) -> TestClient:
    signed_in(app_client, "admin", "root")
    return app_client


# --- 5. CSV formula injection ------------------------------------------------------------------

# What a rater may type as a skip reason, and the cell the export must hold (OWASP "CSV
# Injection": a leading = + - @ tab or carriage return makes a spreadsheet read a formula).
FORMULAS = {
    "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
    "+1+1": "'+1+1",
    "-2+3": "'-2+3",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "plain reason": "plain reason",
    "a = b": "a = b",
}
# A skip reason is stored stripped; a concept's text as written (a tab or CR first stays).
CONCEPTS = {"\t=HYPERLINK(1)": "'\t=HYPERLINK(1)", "\r+1": "'\r+1", "sci-fi": "sci-fi"}


def test_csv_formula_injection_is_quoted(admin: TestClient) -> None:
    sessions = _sessions(admin)
    raters = [create_account(sessions, "annotator", f"rater{k}") for k in range(len(FORMULAS))]
    study_id = studies.create_study(sessions, "fixture", "pilot", size=3, min_confidence=0.0)
    studies.assign(sessions, study_id, [r.username for r in raters])
    items = study_items(sessions, study_id)
    for rater, reason in zip(raters, FORMULAS, strict=True):
        studies.rate(sessions, study_id, rater.id, *items[0], None, reason)
    with sessions.begin() as session:
        for (latent, concept), text in zip(items[:3], CONCEPTS, strict=True):
            session.execute(
                update(StudyItem)
                .where(StudyItem.study_id == study_id, StudyItem.latent_idx == latent)
                .where(StudyItem.concept_id == concept)
                .values(text=text)
            )
    for k, item in enumerate(items[1:3]):
        studies.rate(sessions, study_id, raters[0].id, *item, 3 + k)

    export = admin.get(f"/studies/{study_id}/results.csv")
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text, newline="")))
    got = {r["annotator"]: r["skip_reason"] for r in rows if r["skip_reason"]}
    assert got == {r.username: FORMULAS[reason] for r, reason in zip(raters, FORMULAS, strict=True)}
    assert {r["concept"] for r in rows} == set(CONCEPTS.values())
    # Numbers stay numbers (a rating, an index): never quoted.
    assert sorted(r["rating"] for r in rows if r["rating"]) == ["3", "4"]
    assert all(r["latent_idx"].isdigit() for r in rows)


def study_items(sessions: sessionmaker[Session], study_id: int) -> list[tuple[int, int]]:
    with sessions() as session:
        rows = session.execute(
            select(StudyItem.latent_idx, StudyItem.concept_id)
            .where(StudyItem.study_id == study_id)
            .order_by(StudyItem.position)
        ).all()
    return [(int(a), int(b)) for a, b in rows]


# --- 6. usernames ------------------------------------------------------------------------------

REFUSED_NAMES = {
    "otadmin\n": "white space",
    " otadmin": "white space",
    "ot admin": "a space (U+0020) at position 3",
    "ot\u202eadmin": "U+202E",
    "ot\x07admin": "a control character (U+0007)",
    "ot\x1b[31madmin": "U+001B",
    ".admin": "starts with '.'",
    "": "empty",
    "x" * 65: "65 characters",
}


def n_accounts(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(session.scalars(select(Account.id)).all())


def test_username_with_trailing_newline_is_refused(admin: TestClient) -> None:
    """Refused from the admin form, an invite sign-up and the core (the CLI's path), each
    saying what to fix; nothing is created."""
    sessions = _sessions(admin)
    before = n_accounts(sessions)
    for name, why in REFUSED_NAMES.items():
        with pytest.raises(AccountError, match=re.escape(why)):
            accounts.create_account(sessions, name, PASSWORD, "annotator")
        if not name or len(name) > 64:
            continue  # the form's own length limits answer 422 first
        form = {"username": name, "password": PASSWORD, "role": "annotator"}
        page = admin.post("/admin/accounts", data=form, follow_redirects=False)
        assert page.status_code == 400, (name, page.status_code)
        assert "is not allowed" in page.text and why.replace("'", "&#39;") in page.text, name
    assert n_accounts(sessions) == before

    link = admin.post("/admin/invites", data={"role": "annotator"}).text
    token = re.search(r'/invite/([A-Za-z0-9_-]{20,})"', link)
    assert token
    with TestClient(admin.app) as guest:
        form_page = guest.get(f"/invite/{token[1]}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form_page.text)
        assert csrf
        data = {"username": "otadmin\n", "password": PASSWORD, "csrf_token": csrf[1]}
        refused = guest.post(f"/invite/{token[1]}", data=data, follow_redirects=False)
        assert refused.status_code == 400 and "white space" in refused.text
        assert n_accounts(sessions) == before
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', refused.text)  # a new one
        assert csrf
        data.update(username="otadmin", csrf_token=csrf[1])
        assert (
            guest.post(f"/invite/{token[1]}", data=data, follow_redirects=False).status_code == 303
        )
    assert n_accounts(sessions) == before + 1


def test_username_is_stored_nfc_and_one_name_is_one_account(fresh_sessions: Any) -> None:
    decomposed, composed = "zoe\u0308", "zo\u00eb"  # "zoë" typed two ways
    made = accounts.create_account(fresh_sessions, decomposed, PASSWORD, "annotator")
    assert made.username == composed
    with pytest.raises(accounts.NameTaken, match="exists already"):
        accounts.create_account(fresh_sessions, composed, PASSWORD, "annotator")
    assert accounts.authenticate(fresh_sessions, decomposed, PASSWORD) is not None
    assert accounts.check_username("José.M_2-b") == "José.M_2-b"


def test_username_refused_by_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from worker.cli import app as cli

    settings = {"RECSAE_DATA_DIR": str(tmp_path), "RECSAE_ACCOUNT_PASSWORD": PASSWORD}
    result = CliRunner().invoke(cli, ["accounts", "add", "otadmin\n"], env=settings)
    assert result.exit_code != 0 and "white space" in result.output, result.output
    listed = CliRunner().invoke(cli, ["accounts", "list"], env=settings)
    assert "otadmin" not in listed.output


# --- 8. control and bidi characters ------------------------------------------------------------

RLO, BEL, ESC = "\u202e", "\x07", "\x1b"


def test_bidi_controls_are_escaped(admin: TestClient) -> None:
    """Stored text (an LLM concept, a study name and a username stored before the checks)
    shows each control or bidi character spelled out, on every page that prints it."""
    sessions = _sessions(admin)
    hostile = f"txt{RLO}gnp.exe {BEL}bell {ESC}[31mred"
    shown = "txt[U+202E]gnp.exe [U+0007]bell [U+001B][31mred"
    with sessions.begin() as session:
        concept = session.scalars(select(Concept).where(Concept.run_id == "fixture")).first()
        assert concept is not None
        concept.text, latent = hostile, concept.latent_idx
    study_id = studies.create_study(sessions, "fixture", "pilot", size=3, min_confidence=0.0)
    with sessions.begin() as session:
        session.execute(update(Study).where(Study.id == study_id).values(name=hostile))
        session.add(Account(username=f"old{RLO}name", password_hash="x", role="annotator"))
    pages = [
        f"/runs/fixture/latents/{latent}",
        f"/studies/{study_id}",
        "/studies",
        "/admin/accounts",
    ]
    for path in pages:
        page = admin.get(path, headers=HTML)
        assert page.status_code == 200, path
        for char in (RLO, BEL, ESC):
            assert char not in page.text, (path, repr(char))
    assert shown in admin.get(f"/runs/fixture/latents/{latent}", headers=HTML).text
    assert shown in admin.get(f"/studies/{study_id}", headers=HTML).text
    assert "old[U+202E]name" in admin.get("/admin/accounts", headers=HTML).text
    # The JSON twin is data: it keeps the text as stored.
    assert admin.get(f"/studies/{study_id}.json").json()["study"]["name"] == hostile


@pytest.mark.parametrize("char", [RLO, BEL, ESC, "\x00", "\u2066"])
def test_study_name_with_control_characters_is_refused(admin: TestClient, char: str) -> None:
    form = {"run_id": "fixture", "name": f"pilot{char}", "size": "3", "min_confidence": "0"}
    refused = admin.post("/studies", data=form, follow_redirects=False)
    assert refused.status_code == 400
    assert f"U+{ord(char):04X}" in refused.json()["detail"]
    with _sessions(admin)() as session:
        assert session.scalars(select(Study)).all() == []


# --- 8. the database down: 503 with Retry-After ---------------------------------------------


def _pg_ctl(url: str, data_dir: str, *args: str) -> None:
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_user, str(pg_bin() / "pg_ctl"), "-D", data_dir, "-w", *args],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.mark.postgres
def test_database_down_answers_503(tmp_path: Path) -> None:
    """A real server on a PostgreSQL of its own: the database stopped mid-test, every page,
    JSON twin and write answers 503 with Retry-After and a message (signed in or not); the
    database back, the same requests answer 200 again."""
    import psycopg

    with postgres_server("recsae_down") as url:
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        settings = Settings(data_dir=tmp_path, database_url=url, allowed_hosts=TEST_HOSTS)
        migrate.upgrade(url)
        sessions = session_factory(url)
        publish_fixture(sessions)
        account = accounts.create_account(sessions, "ann", PASSWORD, "annotator")
        token, _ = accounts.start_session(sessions, account.id, timedelta(hours=1))
        requests = [
            ("GET", "/runs/fixture.json", {}, {}),
            ("GET", "/runs/fixture", HTML, {}),
            ("GET", "/runs/fixture/latents", HTML, {SESSION_COOKIE: token}),
            ("GET", "/studies.json", {}, {SESSION_COOKIE: token}),
            ("POST", "/api/runs/fixture/latents/0/explain", {}, {SESSION_COOKIE: token}),
        ]
        with background_server(settings, timeout_s=120) as base:

            def answers() -> list[httpx.Response]:
                # A new connection each: the server's keep-alive may end while postgres stops.
                return [
                    httpx.request(m, base + path, headers=h, cookies=k, timeout=60)
                    for m, path, h, k in requests
                ]

            assert [r.status_code for r in answers()[:4]] == [200] * 4
            _pg_ctl(url, data_dir, "-m", "fast", "stop")
            try:
                for (method, path, headers, _), r in zip(requests, answers(), strict=True):
                    assert r.status_code == 503, (method, path, r.status_code, r.text[:300])
                    assert r.headers["Retry-After"] == "5", path
                    assert "database is not answering" in r.text, path
                    if headers:
                        assert r.headers["content-type"].startswith("text/html"), path
                    else:
                        assert r.json()["detail"].startswith("The database"), path
                # A page that needs no database still answers.
                assert httpx.get(base + "/login", timeout=60).status_code == 200
            finally:
                _pg_ctl(url, data_dir, "-l", str(Path(data_dir).parent / "restart.log"), "restart")
            assert [r.status_code for r in answers()[:4]] == [200] * 4


# --- 8. OPTIONS and 405: every method of a path ------------------------------------------------


def test_options_lists_every_method(client: TestClient) -> None:
    """For every path of the app, OPTIONS answers 204 with Allow naming exactly the methods its
    routes serve (plus OPTIONS), and a method it does not serve answers 405 with the same Allow."""
    by_path: dict[str, set[str]] = defaultdict(set)
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if route.methods:
            by_path[route.path].update(route.methods)
    assert {"GET", "POST"} <= by_path["/login"] and {"GET", "POST"} <= by_path["/studies"]

    def concrete(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "1", path)

    for path, methods in by_path.items():
        url = concrete(path)
        expected = set(methods) | {"OPTIONS"}  # what the schema declares for the path
        answer = client.options(url)
        assert answer.status_code == 204, (path, answer.status_code)
        assert set(answer.headers["allow"].split(", ")) == expected, (path, answer.headers)
        wrong = client.request("PUT" if "PUT" not in expected else "DELETE", url)
        assert wrong.status_code == 405, path
        assert set(wrong.headers["allow"].split(", ")) == expected, path
        assert "is not allowed" in wrong.json()["detail"]
    for path in ("/admin/accounts", "/invite/abc", "/login", "/studies"):
        assert client.options(path).headers["allow"] == "GET, POST, OPTIONS", path


# --- 8. the schema states what the server enforces -------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(make_settings(Path("/nonexistent"))).openapi()


def _form_schema(schema: dict[str, Any], path: str) -> dict[str, Any]:
    body = schema["paths"][path]["post"]["requestBody"]["content"]
    ref = body["application/x-www-form-urlencoded"]["schema"]["$ref"].split("/")[-1]
    return schema["components"]["schemas"][ref]  # type: ignore[no-any-return]


def test_openapi_states_the_constraints_the_server_enforces(
    schema: dict[str, Any], client: TestClient
) -> None:
    components = schema["components"]["schemas"]
    # Segment steering: scales in [-10, 10] (999999 was schema-valid and refused).
    segment = components["SegmentEditIn"]["properties"]["value"]
    assert (segment["minimum"], segment["maximum"]) == (-10, 10)
    for name in ("SteerRequest", "SegmentSteerRequest"):
        edits = components[name]["properties"]["edits"]
        assert edits["uniqueItems"] and "each latent at most once" in edits["description"]
    # A rating: value 1-4 or absent, never null; a skip needs a reason.
    rating_path = "/studies/{study_id}/ratings"
    rating = _form_schema(schema, rating_path)["properties"]["value"]
    assert rating["type"] == "integer" and "anyOf" not in rating
    body = schema["paths"][rating_path]["post"]["requestBody"]["content"]
    assert {"required": ["value"]} in body["application/x-www-form-urlencoded"]["schema"]["anyOf"]
    # New accounts: the role is one of two, the password long enough, the name's pattern.
    new_account = _form_schema(schema, "/admin/accounts")["properties"]
    assert new_account["role"]["enum"] == ["admin", "annotator"]
    assert new_account["password"]["minLength"] == accounts.MIN_PASSWORD_LENGTH
    assert new_account["username"]["pattern"] == accounts.USERNAME_PATTERN
    invite = _form_schema(schema, "/admin/invites")["properties"]["study_id"]
    assert invite["pattern"] == "^[0-9]{0,10}$"


def _edits_pattern(schema: dict[str, Any]) -> str:
    params = schema["paths"]["/runs/{run_id}/users/{idx}"]["get"]["parameters"]
    [edits] = [p for p in params if p["name"] == "_edits"]
    return str(edits["schema"]["pattern"])


# _edits values the server parses, and some it must refuse: it answers 422 exactly where the
# schema's pattern does not match (the latent 0 is active for user 0 or not: a value in ±1
# is in range either way).
EDITS = ["0:0.5", "0:-1", "0:5e-1", "0:.5", "0:1.", "0:+1", "", "0:1\n", "00000000000000",
         "0:1,", "0: 1", "0:1e5000", "x:1", "0:1:2", "0:0x1", ",".join(["0:1"] * 33),
         "0:1e6", "0:1000000", "0:000001", "0:1e-400", "0:1e+00"]  # fmt: skip


def test_edits_query_is_refused_exactly_where_the_schema_pattern_fails(
    schema: dict[str, Any], tmp_path: Path
) -> None:
    pattern = _edits_pattern(schema)
    settings, _ = steerable_run(tmp_path, "edits", seed=1)
    with TestClient(create_app(settings)) as client:
        for raw in EDITS:
            valid = re.fullmatch(pattern.removeprefix("^").removesuffix("$"), raw) is not None
            got = client.get("/runs/edits/users/0.json", params={"_edits": raw})
            assert got.status_code == (200 if valid else 422), (raw, got.text[:200])


def test_blank_rating_value_is_a_skip_and_invites_name_unknown_studies_404(
    admin: TestClient,
) -> None:
    sessions = _sessions(admin)
    study_id = studies.create_study(sessions, "fixture", "pilot", size=3, min_confidence=0.0)
    account = accounts.get_account(sessions, "root")
    studies.assign(sessions, study_id, [account.username])
    json = {"accept": "application/json"}
    skip = {"position": "0", "value": "", "skip_reason": "examples unclear"}
    assert admin.post(f"/studies/{study_id}/ratings", data=skip, headers=json).status_code == 200
    no_reason = {"position": "0", "value": ""}
    refused = admin.post(f"/studies/{study_id}/ratings", data=no_reason, headers=json)
    assert refused.status_code == 400 and "needs a reason" in refused.json()["detail"]
    unknown = admin.post("/admin/invites", data={"role": "annotator", "study_id": "0"})
    assert unknown.status_code == 404 and "no study 0" in unknown.text
    taken = {"username": "root", "password": PASSWORD, "role": "annotator"}
    assert admin.post("/admin/accounts", data=taken).status_code == 409


def test_a_latent_written_12_0_is_latent_12() -> None:
    """JSON Schema's "integer" includes 12.0 (schemathesis sent it and got 422); a bool or a
    string is still no latent."""
    from pydantic import ValidationError

    from backend.routes.steer_models import SteerRequest

    body = SteerRequest.model_validate({"edits": [{"latent": 12.0, "value": 1.0}]})
    assert body.edits[0].latent == 12 and isinstance(body.edits[0].latent, int)
    for wrong in (True, "12", 12.5):
        with pytest.raises(ValidationError):
            SteerRequest.model_validate({"edits": [{"latent": wrong, "value": 1.0}]})
