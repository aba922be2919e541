"""Every route's security, generated from ``app.routes`` (backend/auth.py, backend/security.py).

Every (method, path) the app serves must have a rule in :data:`WRITES` or :data:`READS` below:
a new route without one fails :func:`test_every_route_has_a_rule`. For every unsafe method
(POST/PUT/PATCH/DELETE) the request that succeeds with the right CSRF token (the control) is
also sent without a token, with a wrong one, from another site's ``Origin`` and with
``Sec-Fetch-Site: cross-site`` — each must be refused with 403 and change nothing. Every page
is read as anonymous, as an annotator assigned to nothing, as the study's annotator and as an
admin, and must answer what its rule says: every /admin page and every study-management page is
refused to anonymous and annotators.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from backend.auth import CSRF_HEADER, SESSION_COOKIE, UNSAFE_METHODS
from core import accounts, invites, studies
from core.accounts import token_hash
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account, Invite, LoginSession, Rating, Study, StudyAnnotator
from tests.backend.accounts import PASSWORD, create_account, signed_in

SAME_SITE = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
CROSS_SITE = {
    "another site's Origin": {"origin": "http://evil.example"},
    "Sec-Fetch-Site: cross-site": {"sec-fetch-site": "cross-site"},
}
WRONG = "x" * 43  # the shape of a real token, not this session's


@dataclass
class World:
    """What the requests refer to: one run (the fixture), one open study with its annotator,
    an account to disable and an open invite."""

    app: Any
    study: int
    accounts: dict[str, int]  # who -> account id: annotator (assigned to nothing), assigned, admin
    invite_token: str  # for the invitee's sign-up
    invite_digest: str  # another invite, for the revoke
    sessions: Any = field(repr=False)

    def snapshot(self) -> tuple[Any, ...]:
        """Every row a write here could add or change (a refused request changes none)."""
        with self.sessions() as session:
            return tuple(
                tuple(tuple(row) for row in session.execute(query))
                for query in (
                    select(Account.username, Account.role, Account.disabled),
                    select(Study.id, Study.status),
                    select(StudyAnnotator.study_id, StudyAnnotator.account_id),
                    select(Rating.account_id, Rating.latent_idx, Rating.value),
                    select(Invite.token_hash, Invite.expires_at, Invite.used_at),
                    select(LoginSession.token_hash),
                )
            )


@pytest.fixture
def world(published: Settings) -> Iterator[World]:
    app = create_app(published)
    sessions = session_factory(published.resolved_database_url)
    with TestClient(app):  # startup: migrations, engines
        create_account(sessions, "annotator", "target")  # the one an admin disables
        create_account(sessions, "annotator", "someone")  # assigned by the control request
        who = {
            "annotator": create_account(sessions, "annotator", "reader").id,
            "assigned": create_account(sessions, "annotator", "assigned").id,
            "admin": create_account(sessions, "admin", "boss").id,
        }
        study = studies.create_study(sessions, "fixture", "security", size=4, seed=1)
        studies.assign(sessions, study, ["assigned"])
        token, _ = invites.create_invite(sessions, "annotator")
        revocable, _ = invites.create_invite(sessions, "annotator")
        yield World(app, study, who, token, token_hash(revocable), sessions)


# --- unsafe methods ------------------------------------------------------------------------------

# How the route checks that a write comes from our own page:
SESSION = "session"  # the signed-in session's token (X-CSRF-Token header or csrf_token field)
FORM_COOKIE = "form cookie"  # no session yet: the form's own token, in a cookie and a field
NONE = "none"  # a read with a body (steering): no token, but cross-site is still refused
ANY = 0


@dataclass
class Write:
    path: str  # {study}, {token}, {digest} filled from the World
    data: dict[str, str] | None  # form fields (None: a JSON body, see ``json``)
    check: str  # SESSION, FORM_COOKIE or NONE
    who: str  # who sends the control: anonymous, annotator, assigned, admin
    ok: int  # the control's status; ANY: anything but 401/403 (steering: this run has no SAE)
    form_page: str | None = None  # FORM_COOKIE: the page that sets the cookie
    json: Any = None


WRITES: dict[tuple[str, str], Write] = {
    ("POST", "/login"): Write(
        "/login", {"username": "target", "password": PASSWORD}, FORM_COOKIE, "anonymous", 303,
        form_page="/login",
    ),
    ("POST", "/logout"): Write("/logout", {}, SESSION, "annotator", 303),
    ("POST", "/admin/accounts"): Write(
        "/admin/accounts", {"username": "newcomer", "password": PASSWORD, "role": "annotator"},
        SESSION, "admin", 303,
    ),
    ("POST", "/admin/accounts/{username}/disabled"): Write(
        "/admin/accounts/target/disabled", {"disabled": "true"}, SESSION, "admin", 303
    ),
    ("POST", "/admin/invites"): Write(
        "/admin/invites", {"role": "annotator"}, SESSION, "admin", 200
    ),
    ("POST", "/admin/invites/{digest}/revoke"): Write(
        "/admin/invites/{digest}/revoke", {}, SESSION, "admin", 303
    ),
    ("POST", "/invite/{token}"): Write(
        "/invite/{token}", {"username": "invitee", "password": PASSWORD}, FORM_COOKIE,
        "anonymous", 303, form_page="/invite/{token}",
    ),
    ("POST", "/studies"): Write(
        "/studies", {"run_id": "fixture", "name": "another", "size": "2"}, SESSION, "admin", 303
    ),
    ("POST", "/studies/{study_id}/annotators"): Write(
        "/studies/{study}/annotators", {"username": "someone"}, SESSION, "admin", 303
    ),
    ("POST", "/studies/{study_id}/ratings"): Write(
        "/studies/{study}/ratings", {"position": "0", "value": "3"}, SESSION, "assigned", 303
    ),
    # After the rating: closing the study freezes its ratings.
    ("POST", "/studies/{study_id}/status"): Write(
        "/studies/{study}/status", {"status": "closed"}, SESSION, "admin", 303
    ),
    ("POST", "/api/runs/{run_id}/latents/{idx}/explain"): Write(
        "/api/runs/fixture/latents/0/explain", {}, SESSION, "annotator", 503  # no LLM here
    ),
    ("POST", "/api/jobs/{job_id}/cancel"): Write(
        "/api/jobs/1/cancel", {}, SESSION, "annotator", 404  # no job here (docs/jobs.md)
    ),
    ("POST", "/api/runs/{run_id}/users/{idx}/steer"): Write(
        "/api/runs/fixture/users/0/steer", None, NONE, "anonymous", ANY, json={"edits": []}
    ),
    ("POST", "/api/runs/{run_id}/segment/steer"): Write(
        "/api/runs/fixture/segment/steer", None, NONE, "anonymous", ANY,
        json={"edits": [{"latent": 0, "value": 2}]},
    ),
}  # fmt: skip


def _fill(path: str, world: World) -> str:
    return path.format(study=world.study, token=world.invite_token, digest=world.invite_digest)


def _browser(world: World, who: str) -> tuple[TestClient, str | None]:
    """A client with a session of its own as ``who`` (the cookie only, no CSRF header) and the
    session's token."""
    client = TestClient(world.app)
    if who == "anonymous":
        return client, None
    token, login = accounts.start_session(world.sessions, world.accounts[who], timedelta(hours=1))
    client.cookies.set(SESSION_COOKIE, token)
    return client, login.csrf_token


FORM_TOKEN = re.compile(r'<form method="post" action="([^"]+)"[^>]*>\s*<input type="hidden" '
                        r'name="csrf_token" value="([^"]+)"')  # fmt: skip


def send(
    world: World, key: tuple[str, str], token: str | None, headers: dict[str, str]
) -> tuple[Any, bool]:
    """The route's request from a fresh browser of its rule's ``who``, and whether it changed
    the database; ``token``: "right" (the session's, or the form's), a literal wrong one, or
    None (no token at all)."""
    rule = WRITES[key]
    client, session_token = _browser(world, rule.who)
    right = session_token
    if rule.check == FORM_COOKIE:  # the form page sets the cookie its field must match
        assert rule.form_page is not None
        page = client.get(_fill(rule.form_page, world))
        found = FORM_TOKEN.search(page.text)
        assert page.status_code == 200 and found, f"its form page: {page.text[:120]}"
        right = found.group(2)
    sent = right if token == "right" else token
    path = _fill(rule.path, world)
    before = world.snapshot()
    if rule.json is not None:
        extra = {CSRF_HEADER: sent} if sent else {}
        response = client.request(
            key[0], path, json=rule.json, headers={**headers, **extra}, follow_redirects=False
        )
    else:
        data = dict(rule.data or {})
        if sent:
            data["csrf_token"] = sent
        response = client.request(key[0], path, data=data, headers=headers, follow_redirects=False)
    return response, world.snapshot() != before


def unsafe_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        for method in (route.methods or set()) & UNSAFE_METHODS
    }


def test_every_write_needs_the_token_and_our_own_site(world: World) -> None:
    """Without a token, with a wrong one, from another site: 403 and nothing written."""
    assert unsafe_routes(world.app) == WRITES.keys(), "add a rule to WRITES for a new write"
    failures = []
    for key, rule in WRITES.items():
        # what is sent -> (token, headers, what the refusal must say)
        attempts: dict[str, tuple[str | None, dict[str, str], str]] = {
            f"{name}, right token": ("right", h, "Cross-origin request refused")
            for name, h in CROSS_SITE.items()
        }
        if rule.check != NONE:
            needle = "CSRF check failed" if rule.check == SESSION else "The form expired"
            attempts["no token"] = (None, SAME_SITE, needle)
            attempts["a wrong token"] = (WRONG, SAME_SITE, needle)
            attempts["no token, no browser headers"] = (None, {}, needle)
        for what, (token, headers, needle) in attempts.items():
            try:
                response, changed = send(world, key, token, headers)
            except AssertionError as exc:  # the form page is gone: an earlier attempt got in
                failures.append(f"{key} {what}: {exc}")
                continue
            if response.status_code != 403:
                failures.append(f"{key} {what}: {response.status_code}, expected 403")
            elif needle not in response.text:
                failures.append(f"{key} {what}: 403 for another reason: {response.text[:120]}")
            if changed:
                failures.append(f"{key} {what}: the database changed")
    # The controls: the same requests with the token from our own pages succeed, so the
    # refusals above are the token's and the origin's doing (the steering reads need none).
    for key, rule in WRITES.items():
        try:
            response, _ = send(world, key, "right", SAME_SITE)
        except AssertionError as exc:
            failures.append(f"{key} with the token: {exc}")
            continue
        got = response.status_code
        if got in (401, 403) if rule.ok == ANY else got != rule.ok:
            failures.append(f"{key}: {got}, expected {rule.ok or 'neither 401 nor 403'}")
        if rule.check == NONE:
            bare, _ = send(world, key, None, SAME_SITE)
            if bare.status_code in (401, 403):
                failures.append(f"{key} without a token: {bare.status_code}")
    assert not failures, "\n".join(failures)


def test_a_refused_logout_keeps_the_session(app_client: TestClient) -> None:
    client = app_client
    login = signed_in(client, "annotator")
    client.headers.pop(CSRF_HEADER)
    for token in (None, WRONG):
        data = {"csrf_token": token} if token else {}
        assert client.post("/logout", data=data, follow_redirects=False).status_code == 403
        assert client.get("/api/me").json()["signed_in"] is True
    done = client.post("/logout", data={"csrf_token": login.csrf_token}, follow_redirects=False)
    assert done.status_code == 303 and client.get("/api/me").json() == {"signed_in": False}


# --- pages ---------------------------------------------------------------------------------------

PUBLIC = "public"  # anyone (run pages and their JSON, sign-in and invite pages, assets)
SIGNED_IN = "signed in"  # any account
ADMIN = "admin"  # admins only
ASSIGNED_OR_ADMIN = "assigned or admin"  # the study's annotators and admins
ASSIGNED = "assigned"  # the study's annotators only (blind annotation)

# role -> allowed?: anonymous, annotator (assigned to nothing), assigned, admin
ALLOWED = {
    PUBLIC: (True, True, True, True),
    SIGNED_IN: (False, True, True, True),
    ADMIN: (False, False, False, True),
    ASSIGNED_OR_ADMIN: (False, False, True, True),
    ASSIGNED: (False, False, True, False),
}
ROLES = ("anonymous", "annotator", "assigned", "admin")

READS: dict[tuple[str, str], tuple[str, str]] = {  # (method, path) -> (a URL, rule)
    ("GET", "/openapi.json"): ("/openapi.json", PUBLIC),
    ("GET", "/docs"): ("/docs", PUBLIC),
    ("GET", "/index.json"): ("/index.json", PUBLIC),
    ("GET", "/"): ("/", PUBLIC),
    ("GET", "/runs/{run_id}.json"): ("/runs/fixture.json", PUBLIC),
    ("GET", "/runs/{run_id}"): ("/runs/fixture", PUBLIC),
    ("GET", "/runs/{run_id}/latents.json"): ("/runs/fixture/latents.json", PUBLIC),
    ("GET", "/runs/{run_id}/latents"): ("/runs/fixture/latents", PUBLIC),
    ("GET", "/runs/{run_id}/latents/{idx}.json"): ("/runs/fixture/latents/0.json", PUBLIC),
    ("GET", "/runs/{run_id}/latents/{idx}"): ("/runs/fixture/latents/0", PUBLIC),
    ("GET", "/runs/{run_id}/users.json"): ("/runs/fixture/users.json", PUBLIC),
    ("GET", "/runs/{run_id}/users"): ("/runs/fixture/users", PUBLIC),
    ("GET", "/runs/{run_id}/items.json"): ("/runs/fixture/items.json", PUBLIC),
    ("GET", "/runs/{run_id}/items"): ("/runs/fixture/items", PUBLIC),
    ("GET", "/runs/{run_id}/items/{idx}.json"): ("/runs/fixture/items/0.json", PUBLIC),
    ("GET", "/runs/{run_id}/items/{idx}"): ("/runs/fixture/items/0", PUBLIC),
    ("GET", "/api/runs/{run_id}/steer/latents"): ("/api/runs/fixture/steer/latents?q=a", PUBLIC),
    ("GET", "/runs/{run_id}/users/{idx}.json"): ("/runs/fixture/users/0.json", PUBLIC),
    ("GET", "/runs/{run_id}/users/{idx}"): ("/runs/fixture/users/0", PUBLIC),
    ("GET", "/runs/{run_id}/users/{idx}/why.json"): ("/runs/fixture/users/0/why.json", PUBLIC),
    ("GET", "/runs/{run_id}/map.json"): ("/runs/fixture/map.json", PUBLIC),
    ("GET", "/runs/{run_id}/map"): ("/runs/fixture/map", PUBLIC),
    ("GET", "/runs/{run_id}/latents/{idx}/neighbours.json"): (
        "/runs/fixture/latents/0/neighbours.json", PUBLIC,
    ),
    ("GET", "/runs/{run_id}/latents/{idx}/neighbours"): (
        "/runs/fixture/latents/0/neighbours", PUBLIC,
    ),
    ("GET", "/api/runs/{run_id}/latents/{idx}/job"): ("/api/runs/fixture/latents/0/job", PUBLIC),
    ("GET", "/api/jobs/{job_id}"): ("/api/jobs/1", PUBLIC),
    ("GET", "/api/jobs/{job_id}/events"): ("/api/jobs/1/events", PUBLIC),
    ("GET", "/login"): ("/login", PUBLIC),
    ("GET", "/api/me"): ("/api/me", PUBLIC),
    ("GET", "/invite/{token}.json"): ("/invite/{token}.json", PUBLIC),
    ("GET", "/invite/{token}"): ("/invite/{token}", PUBLIC),
    ("GET", "/vendor/plotly.min.js"): ("/vendor/plotly.min.js", PUBLIC),
    ("GET", "/favicon.ico"): ("/favicon.ico", PUBLIC),
    ("GET", "/admin/accounts"): ("/admin/accounts", ADMIN),
    ("GET", "/studies.json"): ("/studies.json", SIGNED_IN),
    ("GET", "/studies"): ("/studies", SIGNED_IN),
    ("GET", "/studies/{study_id}.json"): ("/studies/{study}.json", ASSIGNED_OR_ADMIN),
    ("GET", "/studies/{study_id}"): ("/studies/{study}", ASSIGNED_OR_ADMIN),
    ("GET", "/studies/{study_id}/annotate.json"): ("/studies/{study}/annotate.json", ASSIGNED),
    ("GET", "/studies/{study_id}/annotate"): ("/studies/{study}/annotate", ASSIGNED),
    ("GET", "/studies/{study_id}/results.json"): ("/studies/{study}/results.json", ADMIN),
    ("GET", "/studies/{study_id}/results"): ("/studies/{study}/results", ADMIN),
    ("GET", "/studies/{study_id}/results.csv"): ("/studies/{study}/results.csv", ADMIN),
}  # fmt: skip
# Mounted file trees (no methods of their own): served to anyone, never written to.
MOUNTS = {"/static", "/vendor/swagger"}
# Study management: a study's results and its settings pages are never an annotator's to see
# beyond what the rules above allow; /admin is admins' alone.
STUDY_MANAGEMENT = re.compile(r"^/studies/\{study_id\}/results")


def read_routes(app: Any) -> tuple[set[tuple[str, str]], set[str]]:
    reads, mounts = set(), set()
    for route in iter_route_contexts(app.routes):
        methods = route.methods or set()
        if not methods:
            mounts.add(str(route.path))
        for method in methods - UNSAFE_METHODS - {"HEAD"}:
            reads.add((method, str(route.path)))
    return reads, mounts


def test_every_route_has_a_rule(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    reads, mounts = read_routes(app)
    assert unsafe_routes(app) == WRITES.keys(), "add a rule to WRITES for a new write"
    missing, stale = reads - READS.keys(), READS.keys() - reads
    assert not missing, f"pages without a rule in READS (add one): {sorted(missing)}"
    assert not stale, f"READS names routes that no longer exist: {sorted(stale)}"
    assert mounts == MOUNTS
    for (_, path), (_, rule) in READS.items():
        if path.startswith("/admin") or STUDY_MANAGEMENT.match(path):
            assert rule == ADMIN, f"{path} is an admin page: its rule must be ADMIN"


def test_every_page_as_every_role(world: World) -> None:
    failures = []
    for key, (url, rule) in READS.items():
        path = _fill(url, world)
        for role, allowed in zip(ROLES, ALLOWED[rule], strict=True):
            client, _ = _browser(world, role)
            status = client.get(path, follow_redirects=False).status_code
            if allowed and status in (401, 403):
                failures.append(f"{key[1]} as {role}: {status}, expected to be let in")
            if not allowed and status != (401 if role == "anonymous" else 403):
                want = 401 if role == "anonymous" else 403
                failures.append(f"{key[1]} as {role}: {status}, expected {want}")
    assert not failures, "\n".join(failures)
