"""Accounts for tests of signed-in routes (core/accounts.py, backend/auth.py).

    with TestClient(create_app(fresh_settings)) as client:
        signed_in(client, "annotator")      # cookie + X-CSRF-Token header set on the client
        client.post("/api/...")             # a signed-in, CSRF-checked request
        signed_out(client)

Use a client of your own (not the session-wide ``client`` fixture): signing in changes it.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import CSRF_HEADER, SESSION_COOKIE
from core import accounts
from core.accounts import Login
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account

PASSWORD = "correct horse battery"  # long enough for accounts.MIN_PASSWORD_LENGTH
_numbers = itertools.count(1)


def _sessions(target: Settings | sessionmaker[Session]) -> sessionmaker[Session]:
    if isinstance(target, Settings):
        return session_factory(target.resolved_database_url)
    return target


def create_account(
    target: Settings | sessionmaker[Session],
    role: str = "annotator",
    username: str | None = None,
    password: str = PASSWORD,
) -> Account:
    """A new account in the (migrated) database of ``target`` (Settings or a sessionmaker)."""
    username = username or f"{role}{next(_numbers)}"
    return accounts.create_account(_sessions(target), username, password, role)


def signed_in(client: TestClient, role: str = "annotator", username: str | None = None) -> Login:
    """Create an account with ``role`` in the client's app DB and sign the client in as it: the
    session cookie and the ``X-CSRF-Token`` header are set on the client. Returns the session.
    The app must have started (use the client as a context manager: it migrates the DB)."""
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    account = create_account(sessions, role, username)
    ttl = client.app.state.settings.session_ttl_hours  # type: ignore[attr-defined]
    token, login = accounts.start_session(sessions, account.id, timedelta(hours=ttl))
    client.cookies.set(SESSION_COOKIE, token)
    client.headers[CSRF_HEADER] = login.csrf_token
    return login


def signed_out(client: TestClient) -> None:
    client.cookies.clear()
    client.headers.pop(CSRF_HEADER, None)
