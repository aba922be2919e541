"""Who is signed in, and the checks every mutating route makes (core/accounts.py).

A browser signs in at /login and gets the ``recsae_session`` cookie (HttpOnly, SameSite=Lax).
Mutating routes take :data:`AccountDep`: it answers 401 without a live session, 403 when the
server is read-only, and checks the session's CSRF token (header ``X-CSRF-Token`` for fetch
calls, form field ``csrf_token`` for forms) on every unsafe method. :data:`AdminDep` also
answers 403 to non-admins. The cross-origin check on unsafe methods lives in backend/security.py.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from core import accounts
from core.accounts import Login
from core.store.schema import Account

SESSION_COOKIE = "recsae_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ASSET_PREFIXES = ("/static/", "/vendor/")  # files: no session lookup for them

SIGN_IN_DETAIL = "Sign in to do this: open /login with an account (an admin creates accounts)."


def read_session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


class SessionLookup:
    """Resolves the session cookie once per request into ``request.state.login`` (Login or None),
    for routes, templates (the header's "sign in" / "<name> · sign out") and the read lock.
    Requests without the cookie cost nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = Request(scope).cookies.get(SESSION_COOKIE)
            login = None
            if token and not scope["path"].startswith(ASSET_PREFIXES):
                sessions = scope["app"].state.sessions
                login = await run_in_threadpool(accounts.lookup_session, sessions, token)
            scope.setdefault("state", {})["login"] = login
        await self.app(scope, receive, send)


async def current_login(request: Request) -> Login | None:
    """The request's live login session, or None (see :class:`SessionLookup`)."""
    if not hasattr(request.state, "login"):  # an app built without backend.security.install
        token = read_session_token(request)
        sessions = request.app.state.sessions
        found = await run_in_threadpool(accounts.lookup_session, sessions, token) if token else None
        request.state.login = found
    login: Login | None = request.state.login
    return login


LoginDep = Annotated[Login | None, Depends(current_login)]


async def optional_account(login: LoginDep) -> Account | None:
    return login.account if login else None


async def _submitted_csrf(request: Request) -> str:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: Request, login: Login) -> None:
    """403 unless an unsafe request carries this session's CSRF token (header or form field)."""
    if request.method not in UNSAFE_METHODS:
        return
    submitted = await _submitted_csrf(request)
    if not submitted or not secrets.compare_digest(submitted, login.csrf_token):
        raise HTTPException(
            403,
            f"CSRF check failed: send this session's token in the {CSRF_HEADER} header (or the "
            f"{CSRF_FIELD} form field); reload the page to get it",
        )


def check_writable(request: Request) -> None:
    if request.app.state.settings.read_only:
        raise HTTPException(
            403,
            "This server is read-only (started with --read-only / RECSAE_READ_ONLY): nothing can "
            "be changed here",
        )


async def require_account(request: Request, login: LoginDep) -> Account:
    """The signed-in account (for mutating routes and account pages): 403 on an unsafe method
    when the server is read-only, 401 without a session, 403 when the CSRF token is wrong."""
    if request.method in UNSAFE_METHODS:
        check_writable(request)
    if login is None:
        raise HTTPException(401, SIGN_IN_DETAIL)
    await check_csrf(request, login)
    return login.account


async def require_admin(account: Annotated[Account, Depends(require_account)]) -> Account:
    if account.role != "admin":
        raise HTTPException(
            403, f"Only an admin may do this; {account.username!r} is an {account.role}."
        )
    return account


AccountDep = Annotated[Account, Depends(require_account)]
AdminDep = Annotated[Account, Depends(require_admin)]
OptionalAccountDep = Annotated[Account | None, Depends(optional_account)]
