"""Single-use invite links (issue 10 §1; core/invites.py, backend/routes/invites.py): the admin
creates one and sees its link once, the invitee signs up and lands on the study; a spent,
expired, revoked or unknown link creates nothing; concurrent uses of one token create exactly
one account, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.auth import SESSION_COOKIE
from core import invites, studies
from core.accounts import AccountError, token_hash
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account, Invite, StudyAnnotator
from tests.backend.accounts import PASSWORD, signed_in
from tests.backend.factories import publish_fixture

LINK = re.compile(r'id="invite-link"[^>]*value="(http://testserver/invite/([A-Za-z0-9_-]+))"')


def n_accounts(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Account)) or 0)


def make_invite(admin: TestClient, study_id: int | str = "") -> str:
    """The admin's form post; returns the token from the link the page shows once."""
    page = admin.post("/admin/invites", data={"role": "annotator", "study_id": str(study_id)})
    assert page.status_code == 200, page.text
    found = LINK.search(page.text)
    assert found, page.text
    return found[2]


def sign_up(client: TestClient, token: str, username: str, password: str = PASSWORD) -> Any:
    form = client.get(f"/invite/{token}")
    assert form.status_code == 200, form.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf
    data = {"username": username, "password": password, "csrf_token": csrf[1]}
    return client.post(f"/invite/{token}", data=data, follow_redirects=False)


@pytest.fixture
def app(published: Settings) -> Any:
    return create_app(published)


@pytest.fixture
def study_id(published: Settings) -> int:
    sessions = session_factory(published.resolved_database_url)
    return studies.create_study(sessions, "fixture", "invited", size=3, min_confidence=0.0)


def test_invite_link_signs_up_signs_in_and_assigns_the_study(app: Any, study_id: int) -> None:
    with TestClient(app) as admin, TestClient(app) as guest:
        signed_in(admin, "admin", "root")
        token = make_invite(admin, study_id)
        sessions = app.state.sessions
        with sessions() as session:
            stored = session.scalars(select(Invite)).one()
        assert stored.token_hash == token_hash(token)  # only the hash is kept, never the token
        listed = admin.get("/admin/accounts").text
        assert token not in listed and f"/admin/invites/{stored.token_hash}/revoke" in listed

        info = guest.get(f"/invite/{token}.json").json()
        assert (info["role"], info["study_id"]) == ("annotator", study_id)
        done = sign_up(guest, token, "newbie")
        assert done.status_code == 303 and done.headers["location"] == f"/studies/{study_id}"
        assert guest.get("/api/me").json()["username"] == "newbie"
        assert guest.get(f"/studies/{study_id}").status_code == 200  # assigned: not a 403
        with sessions() as session:
            account = session.scalars(select(Account).filter_by(username="newbie")).one()
            invite = session.get_one(Invite, token_hash(token))
            assert account.role == "annotator" and account.password_hash.startswith("$argon2id$")
            assert invite.used_at is not None and invite.account_id == account.id
            assert session.get(StudyAnnotator, (study_id, account.id)) is not None
        assert "No open invite." in admin.get("/admin/accounts").text


def test_spent_expired_and_unknown_invite_links_create_nothing(app: Any) -> None:
    with TestClient(app) as admin, TestClient(app) as guest:
        signed_in(admin, "admin", "root")
        sessions = app.state.sessions
        spent, expired = make_invite(admin), make_invite(admin)
        assert sign_up(guest, spent, "first").status_code == 303
        guest.cookies.clear()
        before = n_accounts(sessions)
        again = guest.get(f"/invite/{spent}", headers={"accept": "text/html"})
        assert again.status_code == 410 and "used already" in again.text
        reuse = guest.post(f"/invite/{spent}", data={"username": "second", "password": PASSWORD})
        assert reuse.status_code == 410 and "used already" in reuse.json()["detail"]

        with sessions.begin() as session:
            past = datetime.now(UTC) - timedelta(seconds=1)
            session.execute(update(Invite).filter_by(token_hash=token_hash(expired)).values(
                expires_at=past))  # fmt: skip
        late = guest.get(f"/invite/{expired}.json")
        assert late.status_code == 410 and "expired" in late.json()["detail"]
        unknown = guest.get("/invite/not-a-real-token", headers={"accept": "text/html"})
        assert unknown.status_code == 404 and "unknown" in unknown.text
        data = {"username": "third", "password": PASSWORD}
        assert guest.post("/invite/not-a-real-token", data=data).status_code == 404
        assert n_accounts(sessions) == before


def test_revoked_invite_is_no_longer_listed_nor_usable(app: Any) -> None:
    with TestClient(app) as admin, TestClient(app) as guest:
        signed_in(admin, "admin", "root")
        token = make_invite(admin)
        digest = token_hash(token)
        revoked = admin.post(f"/admin/invites/{digest}/revoke", follow_redirects=False)
        assert revoked.status_code == 303
        assert digest not in admin.get("/admin/accounts").text
        assert guest.get(f"/invite/{token}.json").status_code == 410
        assert admin.post(f"/admin/invites/{digest}/revoke").status_code == 404  # not open now
        assert admin.post(f"/admin/invites/{'x' * 64}/revoke").status_code == 422


def test_invite_signup_errors_keep_the_invite_open(app: Any) -> None:
    with TestClient(app) as admin, TestClient(app) as guest:
        signed_in(admin, "admin", "root")
        token = make_invite(admin)
        taken = sign_up(guest, token, "root")
        assert taken.status_code == 409 and "exists already" in taken.text
        short = sign_up(guest, token, "fresh", password="short")
        assert short.status_code == 400 and "too short" in short.text
        forged = guest.post(
            f"/invite/{token}",
            data={"username": "fresh", "password": PASSWORD, "csrf_token": "guess"},
        )
        assert forged.status_code == 403 and SESSION_COOKIE not in guest.cookies
        assert sign_up(guest, token, "fresh").status_code == 303  # still open after all that


def test_admin_invite_form_refuses_bad_input(app: Any) -> None:
    with TestClient(app) as admin:
        signed_in(admin, "admin", "root")
        for data, status, message in (
            ({"role": "owner"}, 400, "role &#39;owner&#39; is unknown"),
            ({"study_id": "99"}, 404, "no study 99"),
            ({"study_id": "x"}, 400, "is not a study id"),
            ({"study_id": " 1"}, 400, "is not a study id"),
        ):
            answer = admin.post("/admin/invites", data=data)
            assert answer.status_code == status and message in answer.text, answer.text
        assert admin.post("/admin/invites", data={"days": "0"}).status_code == 422
        made = admin.post("/admin/invites", headers={"accept": "application/json"})
        assert made.status_code == 201 and "/invite/" in made.json()["link"]


def race(sessions: sessionmaker[Session], token: str, n: int = 8) -> list[str]:
    """``n`` threads use ``token`` at the same moment; what each got (a name, or the refusal)."""
    start = threading.Barrier(n)
    outcome: list[str] = [""] * n

    def use(k: int) -> None:
        start.wait()
        try:
            outcome[k] = invites.accept_invite(sessions, token, f"racer{k}", PASSWORD).username
        except AccountError as exc:
            outcome[k] = type(exc).__name__

    threads = [threading.Thread(target=use, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def check_race(sessions: sessionmaker[Session]) -> None:
    """On a database other tests may share (the PostgreSQL fixture is per session): only this
    test's run, study and racers are looked at."""
    publish_fixture(sessions, run_id="invite-race")
    study = studies.create_study(sessions, "invite-race", "race", size=3, min_confidence=0.0)
    token, _ = invites.create_invite(sessions, "annotator", study_id=study)
    outcome = race(sessions, token)
    winners = [o for o in outcome if o.startswith("racer")]
    assert len(winners) == 1, outcome
    assert sorted(o for o in outcome if o not in winners) == ["InviteGone"] * 7
    with sessions() as session:
        names = session.scalars(select(Account.username).where(Account.username.like("racer%")))
        assigned = session.scalars(select(StudyAnnotator.account_id).filter_by(study_id=study))
        invite = session.get_one(Invite, token_hash(token))
        assert list(names) == winners
        assert list(assigned) == [invite.account_id]


def test_concurrent_uses_of_one_invite_create_exactly_one_account_sqlite(
    fresh_sessions: sessionmaker[Session],
) -> None:
    check_race(fresh_sessions)


@pytest.mark.postgres
def test_concurrent_uses_of_one_invite_create_exactly_one_account_postgres(
    postgres_url: str,
) -> None:
    from core.store.migrate import upgrade

    upgrade(postgres_url)
    check_race(session_factory(postgres_url))
