"""Signing in and out, who am I, and the admin's account list (core/accounts.py).

The login form has no session yet, so it carries its own CSRF token: a random value in a cookie
and the same value in a hidden field (double submit); backend/security.py also refuses it from
another origin. ``next`` (where to go after signing in) is followed only when it is a path on
this server, never another site. Failed sign-ins are throttled per username and per address.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from backend import errors
from backend.auth import SESSION_COOKIE, AdminDep, LoginDep, check_csrf
from backend.deps import SettingsDep, templates
from core import accounts, invites
from core.accounts import AccountError, NameTaken
from core.store.schema import Study

router = APIRouter(tags=["accounts"])

# What core/accounts.py allows, stated in the schema; enforced by core/accounts.py itself, so a
# refused form comes back as its page with the message (sign-in takes any name).
Role = Annotated[str, Form(max_length=16, json_schema_extra={"enum": list(accounts.ROLES)})]
NewUsername = Annotated[
    str,
    Form(
        min_length=1, max_length=accounts.USERNAME_MAX,
        json_schema_extra={"pattern": accounts.USERNAME_PATTERN},
        description="1-64 letters (any script), digits, '.', '_' or '-', starting with a letter "
        "or digit (checked after Unicode NFC normalisation)",
    ),
]  # fmt: skip
NewPassword = Annotated[
    str,
    Form(
        min_length=1, max_length=accounts.MAX_PASSWORD_LENGTH,
        json_schema_extra={"minLength": accounts.MIN_PASSWORD_LENGTH},
    ),
]  # fmt: skip

LOGIN_CSRF_COOKIE = "recsae_login_csrf"


def _redirects(description: str, *codes: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses (one shape) plus the 303 a successful form post answers."""
    return {303: {"description": description}, **errors.responses(*codes)}


class LoginThrottle:
    """Failed sign-ins counted per username and per client address within ``window_s``; past a
    key's limit, tries are refused (429) until its oldest failure ages out. Argon2 makes each
    guess slow; this bounds how many a client gets (per server process)."""

    def __init__(self, per_user: int = 10, per_address: int = 30, window_s: float = 300.0):
        self.limits = {"user": per_user, "addr": per_address}
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str, address: str) -> list[str]:
        return [f"user:{username.lower()}", f"addr:{address}"]

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until every key may try again (0: now)."""
        now, wait = time.monotonic(), 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key, deque())
                while times and times[0] <= now - self.window_s:
                    times.popleft()
                if len(times) >= self.limits[key.partition(":")[0]]:
                    wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.setdefault(key, deque()).append(time.monotonic())


def _throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = request.app.state.login_throttle = LoginThrottle()
    return throttle


def safe_next(target: str | None) -> str:
    """``target`` when it is a local path ("/runs/x?y"), else "/" (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\\\r\n\t"):
        return "/"
    return target


def _login_page(
    request: Request, token: str, next_url: str, error: str | None, status: int, secure: bool
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"login_csrf": token, "next": next_url, "error": error, "fragment": False},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/login"
    )
    return response


@router.get("/login", response_class=HTMLResponse, summary="Sign-in form (HTML)")
def login_form(request: Request, settings: SettingsDep, next: str = "/") -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    return _login_page(request, token, safe_next(next), None, 200, settings.cookie_secure)


@router.post(
    "/login",
    response_class=HTMLResponse,
    summary="Sign in (form post; redirects to next)",
    responses=_redirects("Signed in: on to `next`", 401, 403, 429),
)
async def login(
    request: Request,
    settings: SettingsDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=accounts.MAX_PASSWORD_LENGTH)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    target = safe_next(next)
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    fresh = secrets.token_urlsafe(32)
    if not cookie_token or not secrets.compare_digest(cookie_token, csrf_token):
        error = "The form expired or did not come from this page; please try again."
        return _login_page(request, fresh, target, error, 403, settings.cookie_secure)
    keys = LoginThrottle.keys(username, request.client.host if request.client else "unknown")
    wait_s = _throttle(request).retry_after(keys)
    if wait_s > 0:
        retry = max(1, math.ceil(wait_s))
        error = f"Too many failed sign-ins; try again in {retry} s."
        page = _login_page(request, fresh, target, error, 429, settings.cookie_secure)
        page.headers["Retry-After"] = str(retry)
        return page
    sessions = request.app.state.sessions
    account = await run_in_threadpool(accounts.authenticate, sessions, username, password)
    if account is None:
        _throttle(request).failed(keys)
        error = "Wrong username or password (or the account is disabled)."
        return _login_page(request, fresh, target, error, 401, settings.cookie_secure)
    ttl = timedelta(hours=settings.session_ttl_hours)
    token, _ = await run_in_threadpool(accounts.start_session, sessions, account.id, ttl)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(ttl.total_seconds()), httponly=True, samesite="lax",
        secure=settings.cookie_secure, path="/",
    )  # fmt: skip
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post(
    "/logout",
    summary="Sign out (form post)",
    responses=_redirects("Signed out: on to the runs", 403),
)
async def logout(request: Request, login: LoginDep) -> Response:
    """End this browser's session (the form carries the session's CSRF token)."""
    token = request.cookies.get(SESSION_COOKIE)
    if login is not None and token:
        await check_csrf(request, login)
        await run_in_threadpool(accounts.end_session, request.app.state.sessions, token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/me", summary="The signed-in account")
def me(login: LoginDep) -> dict[str, Any]:
    """Who is signed in: ``signed_in`` false for anonymous visitors; else the account, its role,
    when the session ends, and the session's CSRF token (send it as ``X-CSRF-Token``)."""
    if login is None:
        return {"signed_in": False}
    return {
        "signed_in": True,
        "username": login.account.username,
        "role": login.account.role,
        "expires_at": login.expires_at.isoformat(),
        "csrf_token": login.csrf_token,
    }


# --- admin: accounts ---------------------------------------------------------------------------


def accounts_page_response(
    request: Request,
    error: str | None = None,
    status: int = 200,
    new_invite: dict[str, Any] | None = None,
) -> HTMLResponse:
    """The admin's accounts page: the accounts, the open invites (backend/routes/invites.py),
    and a just-created invite's link, shown this once."""
    sessions = request.app.state.sessions
    with sessions() as session:
        study_rows = session.execute(select(Study.id, Study.name).order_by(Study.id.desc())).all()
    return templates.TemplateResponse(
        request,
        "admin_accounts.html",
        {
            "accounts": accounts.list_accounts(sessions),
            "roles": accounts.ROLES,
            "error": error,
            "fragment": False,
            "invites": invites.list_open(sessions),
            "studies": [{"id": i, "name": n} for i, n in study_rows],
            "new_invite": new_invite,
            "invite_days": invites.DEFAULT_DAYS,
        },
        status_code=status,
    )


@router.get(
    "/admin/accounts",
    response_class=HTMLResponse,
    summary="Accounts (admin, HTML)",
    responses=errors.responses(401, 403),
)
def accounts_page(request: Request, _admin: AdminDep) -> HTMLResponse:
    return accounts_page_response(request)


@router.post(
    "/admin/accounts",
    response_class=HTMLResponse,
    summary="Add an account (admin, form post)",
    responses=_redirects("Added: back to the list", 400, 401, 403, 409),
)
def add_account(
    request: Request,
    _admin: AdminDep,
    username: NewUsername,
    password: NewPassword,
    role: Role = "annotator",
) -> Response:
    try:
        accounts.create_account(request.app.state.sessions, username, password, role)
    except NameTaken as exc:
        return accounts_page_response(request, str(exc), 409)
    except AccountError as exc:
        return accounts_page_response(request, str(exc), 400)
    return RedirectResponse("/admin/accounts", status_code=303)


@router.post(
    "/admin/accounts/{username}/disabled",
    response_class=HTMLResponse,
    summary="Disable or enable an account (admin, form post)",
    responses=_redirects("Done: back to the list", 400, 401, 403, 404),
)
def set_disabled(
    request: Request,
    admin: AdminDep,
    username: str,
    # "true" / "false" exactly, as the form sends them (a bool would also take 0/1/on/off/yes/no,
    # which the schema cannot say; schemathesis' negative_data_rejection caught "0").
    disabled_form: Annotated[Literal["true", "false"], Form(alias="disabled")],
) -> Response:
    disabled = disabled_form == "true"
    if username == admin.username and disabled:
        raise HTTPException(400, "You cannot disable your own account (another admin can).")
    try:
        accounts.set_disabled(request.app.state.sessions, username, disabled)
    except AccountError as exc:
        raise HTTPException(404, str(exc)) from exc
    return RedirectResponse("/admin/accounts", status_code=303)
