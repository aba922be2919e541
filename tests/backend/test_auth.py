"""Accounts and sessions (issue 8 §2): argon2 hashes, sign in/out, expiry, the authorisation
matrix over every mutating route, the login form's own CSRF token and redirect, read-only."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from backend.app import create_app
from backend.auth import CSRF_HEADER, SESSION_COOKIE, UNSAFE_METHODS
from backend.routes.auth import safe_next
from core import accounts
from core.accounts import token_hash
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account, Concept, LoginSession
from tests.backend.accounts import PASSWORD, create_account, signed_in

EXPLAIN = "/api/runs/fixture/latents/0/explain"


def sign_in_with_form(client: TestClient, username: str, password: str, next_url: str = "/") -> Any:
    form = client.get("/login").text
    token = re.search(
        r'action="/login"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)"', form
    )
    assert token, form
    data = {"username": username, "password": password, "csrf_token": token[1], "next": next_url}
    return client.post("/login", data=data, follow_redirects=False)


def me(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/me")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_passwords_are_hashed_with_argon2(fresh_settings: Settings) -> None:
    sessions = session_factory(fresh_settings.resolved_database_url)
    create_account(sessions, "annotator", "ann", "a long secret phrase")
    with sessions() as session:
        stored = session.scalar(select(Account.password_hash).where(Account.username == "ann"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "a long secret phrase" not in stored
    assert accounts.authenticate(sessions, "ann", "a long secret phrase") is not None
    assert accounts.authenticate(sessions, "ann", "a long secret phrasE") is None
    assert accounts.authenticate(sessions, "nobody", "a long secret phrase") is None
    with pytest.raises(accounts.AccountError, match="too short"):
        create_account(sessions, "annotator", "short", "short")
    with pytest.raises(accounts.AccountError, match="exists already"):
        create_account(sessions, "admin", "ann")


def test_sessions_expire_and_logout_ends_them(app_client: TestClient) -> None:
    sessions = app_client.app.state.sessions  # type: ignore[attr-defined]
    create_account(sessions, "annotator", "ann")
    response = sign_in_with_form(app_client, "ann", PASSWORD, "/runs/fixture")
    assert response.status_code == 303 and response.headers["location"] == "/runs/fixture"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = app_client.cookies[SESSION_COOKIE]
    with sessions() as session:
        stored = session.scalars(select(LoginSession.token_hash)).all()
    assert stored == [token_hash(token)]  # only the sha256 is stored, never the token
    assert me(app_client)["username"] == "ann"

    # Expired: the session is no longer honoured, for reading who is in or for writing.
    with sessions.begin() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(update(LoginSession).values(expires_at=past))
    assert me(app_client) == {"signed_in": False}
    assert app_client.post(EXPLAIN).status_code == 401

    # Logout ends the session in the database: the old cookie is worthless afterwards.
    sign_in_with_form(app_client, "ann", PASSWORD)
    login = me(app_client)
    token = app_client.cookies[SESSION_COOKIE]
    out = app_client.post(
        "/logout", data={"csrf_token": login["csrf_token"]}, follow_redirects=False
    )
    assert out.status_code == 303
    assert me(app_client) == {"signed_in": False}
    app_client.cookies.set(SESSION_COOKIE, token)
    assert me(app_client) == {"signed_in": False}
    assert app_client.post(EXPLAIN, headers={CSRF_HEADER: login["csrf_token"]}).status_code == 401


def test_session_lifetime_comes_from_the_setting(published: Settings) -> None:
    with TestClient(create_app(published.model_copy(update={"session_ttl_hours": 0.5}))) as c:
        create_account(c.app.state.sessions, "annotator", "ann")  # type: ignore[attr-defined]
        response = sign_in_with_form(c, "ann", PASSWORD)
        assert "Max-Age=1800" in response.headers["set-cookie"]
        left = datetime.fromisoformat(me(c)["expires_at"]) - datetime.now(UTC)
        assert timedelta(minutes=29) < left <= timedelta(minutes=30)


def test_disabled_account_cannot_sign_in_and_loses_its_sessions(app_client: TestClient) -> None:
    sessions = app_client.app.state.sessions  # type: ignore[attr-defined]
    signed_in(app_client, "annotator", "ann")
    assert me(app_client)["signed_in"]
    accounts.set_disabled(sessions, "ann")
    assert me(app_client) == {"signed_in": False}
    app_client.cookies.clear()
    assert sign_in_with_form(app_client, "ann", PASSWORD).status_code == 401


def test_wrong_password_and_missing_login_token_are_refused(app_client: TestClient) -> None:
    create_account(app_client.app.state.sessions, "annotator", "ann")  # type: ignore[attr-defined]
    wrong = sign_in_with_form(app_client, "ann", "not the password")
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    forged = app_client.post(
        "/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": "guess"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and SESSION_COOKIE not in app_client.cookies


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs/fixture?x=1", "/runs/fixture?x=1"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_login_redirects_only_to_local_paths(target: str, expected: str) -> None:
    assert safe_next(target) == expected


# --- the authorisation matrix ------------------------------------------------------------------

Call = Callable[[TestClient], Any]
OPEN = "open"  # any status but 401/403: the route needs no account


def _admin_form(client: TestClient) -> Any:
    return client.post(
        "/admin/accounts",
        data={"username": "newcomer", "password": PASSWORD, "role": "annotator"},
        follow_redirects=False,
    )


def _disable(client: TestClient) -> Any:
    return client.post(
        "/admin/accounts/target/disabled", data={"disabled": "true"}, follow_redirects=False
    )


# (method, path) -> (request, {role: expected status}); role "anonymous" means signed out.
RULES: dict[tuple[str, str], tuple[Call, dict[str, int | str]]] = {
    ("POST", "/api/runs/{run_id}/latents/{idx}/explain"): (
        lambda c: c.post(EXPLAIN),
        {"anonymous": 401, "annotator": 503, "admin": 503},  # 503: past the checks, no LLM
    ),
    ("POST", "/api/jobs/{job_id}/cancel"): (
        lambda c: c.post("/api/jobs/1/cancel"),
        {"anonymous": 401, "annotator": 404, "admin": 404},  # 404: past the checks, no job
    ),
    ("POST", "/api/runs/{run_id}/users/{idx}/steer"): (
        lambda c: c.post("/api/runs/fixture/users/0/steer", json={"edits": []}),
        {"anonymous": OPEN, "annotator": OPEN, "admin": OPEN},  # a read that takes a body
    ),
    ("POST", "/api/runs/{run_id}/segment/steer"): (
        lambda c: c.post("/api/runs/fixture/segment/steer", json={}),
        {"anonymous": OPEN, "annotator": OPEN, "admin": OPEN},
    ),
    ("POST", "/login"): (
        lambda c: sign_in_with_form(c, "target", PASSWORD),
        {"anonymous": 303, "annotator": 303, "admin": 303},
    ),
    ("POST", "/logout"): (
        lambda c: c.post("/logout", follow_redirects=False),
        {"anonymous": 303, "annotator": 303, "admin": 303},
    ),
    ("POST", "/admin/accounts"): (_admin_form, {"anonymous": 401, "annotator": 403, "admin": 303}),
    ("POST", "/admin/accounts/{username}/disabled"): (
        _disable,
        {"anonymous": 401, "annotator": 403, "admin": 303},
    ),
    # Invite links (issue 10 §1; tests/backend/test_invites.py): the invitee's post needs no
    # account (the link is the permission), so each role gets the unknown link's 404.
    ("POST", "/admin/invites"): (
        lambda c: c.post("/admin/invites", data={"role": "annotator"}),
        {"anonymous": 401, "annotator": 403, "admin": 200},
    ),
    ("POST", "/admin/invites/{digest}/revoke"): (
        lambda c: c.post(f"/admin/invites/{'0' * 64}/revoke", follow_redirects=False),
        {"anonymous": 401, "annotator": 403, "admin": 404},
    ),
    ("POST", "/invite/{token}"): (
        lambda c: c.post("/invite/unknown", data={"username": "x", "password": PASSWORD}),
        {"anonymous": 404, "annotator": 404, "admin": 404},
    ),
    # Human evaluation (issue 10; the full study matrix is in tests/backend/test_study_routes.py).
    # Rows run in order: the admin's POST /studies makes study 1 for the rows after it.
    ("POST", "/studies"): (
        lambda c: c.post("/studies", data={"run_id": "fixture", "name": "s"}, follow_redirects=0),
        {"anonymous": 401, "annotator": 403, "admin": 303},
    ),
    ("POST", "/studies/{study_id}/annotators"): (
        lambda c: c.post("/studies/1/annotators", data={"username": "target"}, follow_redirects=0),
        {"anonymous": 401, "annotator": 403, "admin": 303},
    ),
    ("POST", "/studies/{study_id}/status"): (
        lambda c: c.post("/studies/1/status", data={"status": "open"}, follow_redirects=False),
        {"anonymous": 401, "annotator": 403, "admin": 303},
    ),
    ("POST", "/studies/{study_id}/ratings"): (  # 403: neither is assigned to study 1
        lambda c: c.post("/studies/1/ratings", data={"position": "0", "value": "3"}),
        {"anonymous": 401, "annotator": 403, "admin": 403},
    ),
}


def mutating_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) of the app with an unsafe method, included routers' too."""
    return {
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        for method in (route.methods or set()) & UNSAFE_METHODS
    }


def test_authorisation_matrix(published: Settings) -> None:
    app = create_app(published)
    missing = mutating_routes(app) - RULES.keys()
    assert not missing, f"mutating routes without a rule in RULES (add one): {sorted(missing)}"
    assert not RULES.keys() - mutating_routes(app), "RULES names a route that no longer exists"
    create_account(published, "annotator", "target")
    seen: dict[tuple[str, str, str], int] = {}
    for key, (call, expected) in RULES.items():
        for role, want in expected.items():
            with TestClient(app) as client:
                if role != "anonymous":
                    signed_in(client, role)
                status = call(client).status_code
            seen[(*key, role)] = status
            ok = status not in (401, 403) if want == OPEN else status == want
            assert ok, f"{key} as {role}: {status}, expected {want}"
    # Only signed-in writes reached the explain route's body; nobody wrote a concept.
    with session_factory(published.resolved_database_url)() as session:
        assert session.scalar(select(Concept.id).where(Concept.source == "web")) is None


def test_signed_in_write_without_the_csrf_token_is_refused(app_client: TestClient) -> None:
    login = signed_in(app_client, "admin")
    app_client.headers.pop(CSRF_HEADER)
    assert app_client.post(EXPLAIN).status_code == 403
    assert app_client.post(EXPLAIN, headers={CSRF_HEADER: "x" * 43}).status_code == 403
    assert _admin_form(app_client).status_code == 403
    assert app_client.post(EXPLAIN, headers={CSRF_HEADER: login.csrf_token}).status_code == 503
    form = {"username": "viaform", "password": PASSWORD, "csrf_token": login.csrf_token}
    assert app_client.post("/admin/accounts", data=form, follow_redirects=False).status_code == 303


def test_read_only_server_refuses_every_write(published: Settings) -> None:
    app = create_app(published.model_copy(update={"read_only": True}))
    with TestClient(app) as client:
        signed_in(client, "admin")
        for call in (lambda c: c.post(EXPLAIN), _admin_form, _disable):
            response = call(client)
            assert response.status_code == 403 and "read-only" in response.json()["detail"]
        assert client.get("/runs/fixture/latents/0").status_code == 200
        assert client.get("/admin/accounts").status_code == 200


def test_require_login_to_read_closes_every_page_but_login(published: Settings) -> None:
    app = create_app(published.model_copy(update={"require_login_to_read": True}))
    with TestClient(app) as client:
        page = client.get("/runs/fixture", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fruns%2Ffixture"
        assert client.get("/index.json").status_code == 401
        assert client.get("/login").status_code == 200
        assert client.get("/static/app.js").status_code == 200
        signed_in(client, "annotator")
        assert client.get("/index.json").status_code == 200


def test_admin_page_lists_adds_and_disables(app_client: TestClient) -> None:
    signed_in(app_client, "admin", "root")
    create_account(app_client.app.state.sessions, "annotator", "ann")  # type: ignore[attr-defined]
    page = app_client.get("/admin/accounts")
    assert page.status_code == 200 and "ann" in page.text and "root" in page.text
    assert _admin_form(app_client).status_code == 303
    refused = app_client.post(
        "/admin/accounts",
        data={"username": "bad name", "password": PASSWORD},
        follow_redirects=False,
    )
    assert refused.status_code == 400 and "is not allowed" in refused.text
    assert (
        app_client.post(
            "/admin/accounts/ann/disabled", data={"disabled": "true"}, follow_redirects=False
        ).status_code
        == 303
    )
    assert (
        app_client.post("/admin/accounts/root/disabled", data={"disabled": "true"}).status_code
        == 400
    )
    assert app_client.post("/admin/accounts/ann/disabled", data={"disabled": ""}).status_code == 422
    # Only the two words the form sends (schemathesis sent 0 and it enabled the account).
    odd = app_client.post("/admin/accounts/newcomer/disabled", data={"disabled": "0"})
    assert odd.status_code == 422
    names = {a.username: a.disabled for a in accounts.list_accounts(app_client.app.state.sessions)}  # type: ignore[attr-defined]
    assert names == {"root": False, "ann": True, "newcomer": False}
    enable = app_client.post(
        "/admin/accounts/ann/disabled", data={"disabled": "false"}, follow_redirects=False
    )
    assert enable.status_code == 303
    sessions = app_client.app.state.sessions  # type: ignore[attr-defined]
    assert not {a.username: a.disabled for a in accounts.list_accounts(sessions)}["ann"]


def test_header_shows_who_is_signed_in(app_client: TestClient) -> None:
    page = app_client.get("/runs/fixture")
    assert 'href="/login?next=/runs/fixture"' in page.text and "csrf-token" not in page.text
    login = signed_in(app_client, "annotator", "ann")
    page = app_client.get("/runs/fixture")
    assert "ann</span> · <button" in page.text
    assert f'<meta name="csrf-token" content="{login.csrf_token}">' in page.text


def test_repeated_failed_sign_ins_are_throttled(app_client: TestClient) -> None:
    create_account(app_client.app.state.sessions, "annotator", "ann")  # type: ignore[attr-defined]
    create_account(app_client.app.state.sessions, "annotator", "bob")  # type: ignore[attr-defined]
    codes = [
        sign_in_with_form(app_client, "ann", f"guess number {i}").status_code for i in range(10)
    ]
    assert codes == [401] * 10
    # Even the right password is refused now, with when to try again.
    blocked = sign_in_with_form(app_client, "ann", PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in app_client.cookies
    # Another account from the same address is not locked out by ann's failures.
    assert sign_in_with_form(app_client, "bob", PASSWORD).status_code == 303


@pytest.mark.postgres
def test_accounts_and_sessions_on_postgres(postgres_url: str) -> None:
    from core.store.migrate import upgrade

    upgrade(postgres_url)
    sessions = session_factory(postgres_url)
    account = create_account(sessions, "admin", "pg-root")
    assert accounts.admin_exists(sessions)
    token, login = accounts.start_session(sessions, account.id, timedelta(hours=1))
    found = accounts.lookup_session(sessions, token)
    assert found is not None and found.account.username == "pg-root"
    assert found.csrf_token == login.csrf_token and found.expires_at.tzinfo is not None
    with sessions.begin() as session:
        past = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(
            update(LoginSession)
            .where(LoginSession.token_hash == token_hash(token))
            .values(expires_at=past)
        )
    assert accounts.lookup_session(sessions, token) is None
    token, _ = accounts.start_session(sessions, account.id, timedelta(hours=1))
    accounts.set_disabled(sessions, "pg-root")
    assert accounts.lookup_session(sessions, token) is None
    with sessions() as session:
        left = session.scalars(
            select(LoginSession).where(LoginSession.account_id == account.id)
        ).all()
    assert left == []  # the expired one swept at the next sign-in, the live one at disabling
