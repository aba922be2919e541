"""Single-use invite links (core/invites.py): an admin creates one on
/admin/accounts and sees its link once; the invitee opens ``/invite/<token>``, picks a username
and password, and is signed in, assigned to the invite's study if it names one.

The sign-up form has no session yet, so, like the login form (backend/routes/auth.py), it
carries its own CSRF token: a random value in a cookie (path /invite) and the same value in a
hidden field. A used, expired or revoked link answers 410, an unknown one 404; neither creates
anything.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from backend import errors
from backend.auth import SESSION_COOKIE, AdminDep, check_writable
from backend.deps import DB_INT_MAX, SettingsDep, templates
from backend.routes.auth import NewPassword, NewUsername, Role, accounts_page_response
from core import accounts, invites
from core.accounts import AccountError, NameTaken
from core.invites import InviteGone, InviteUnknown, StudyUnknown

router = APIRouter(tags=["accounts"])

INVITE_CSRF_COOKIE = "recsae_invite_csrf"
# A study to assign: its id, or empty (stated in the schema, checked here: a refused form comes
# back as the accounts page with the message).
STUDY_ID_PATTERN = "^[0-9]{0,10}$"
Token = Annotated[str, Path(min_length=1, max_length=256, description="the invite's token")]
GONE: dict[int | str, dict[str, Any]] = {
    410: {"model": errors.ErrorOut, "description": "The invite was used, expired or revoked"}
}


def _refusal(exc: AccountError) -> HTTPException:
    if isinstance(exc, InviteGone):
        return HTTPException(410, str(exc))
    if isinstance(exc, InviteUnknown | StudyUnknown):
        return HTTPException(404, str(exc))
    return HTTPException(400, str(exc))


def link(request: Request, token: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{invites.INVITE_PATH}{token}"


# --- admin -------------------------------------------------------------------------------------


@router.post(
    "/admin/invites",
    response_class=HTMLResponse,
    summary="Create a single-use invite link (admin, form post; the link is shown once)",
    responses={
        201: {
            "description": "With `Accept: application/json`: the link and when it expires",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **errors.responses(400, 401, 403, 404),
    },
)
def create_invite(
    request: Request,
    admin: AdminDep,
    role: Role = "annotator",
    study_id: Annotated[
        str,
        Form(
            max_length=12,
            description="a study's id to assign, or empty",
            json_schema_extra={"pattern": STUDY_ID_PATTERN},
        ),
    ] = "",
    days: Annotated[float, Form(gt=0, le=invites.MAX_DAYS)] = invites.DEFAULT_DAYS,
) -> Response:
    """Answers the accounts page with the new link (or, when the request accepts JSON, the
    link and its expiry): the token is not stored, so this is the only time it is shown."""
    if re.fullmatch(STUDY_ID_PATTERN.strip("^$"), study_id) is None:
        return accounts_page_response(request, f"study {study_id!r} is not a study id", 400)
    study = int(study_id) if study_id else None
    try:
        if study is not None and not 1 <= study <= DB_INT_MAX:  # no such id can exist
            raise invites.StudyUnknown(f"no study {study}; the studies are listed at /studies")
        token, expires_at = invites.create_invite(
            request.app.state.sessions, role, created_by=admin.id, study_id=study, days=days
        )
    except invites.StudyUnknown as exc:
        return accounts_page_response(request, str(exc), 404)
    except AccountError as exc:
        return accounts_page_response(request, str(exc), 400)
    url = link(request, token)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"link": url, "expires_at": expires_at.isoformat()}, status_code=201)
    return accounts_page_response(request, new_invite={"link": url, "expires_at": expires_at})


@router.post(
    "/admin/invites/{digest}/revoke",
    summary="Revoke an open invite (admin, form post)",
    responses={303: {"description": "Revoked: back to the accounts"}, **errors.responses(403, 404)},
)
def revoke_invite(
    request: Request,
    _admin: AdminDep,
    digest: Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="the invite's id")],
) -> Response:
    try:
        invites.revoke(request.app.state.sessions, digest)
    except AccountError as exc:
        raise _refusal(exc) from exc
    return RedirectResponse("/admin/accounts", status_code=303)


# --- the invitee -------------------------------------------------------------------------------


def _context(invite: Any) -> dict[str, Any]:
    return {
        "role": invite.role,
        "study_id": invite.study_id,
        "expires_at": accounts._utc(invite.expires_at).isoformat(),
        "min_password_length": accounts.MIN_PASSWORD_LENGTH,
    }


def _signup_page(
    request: Request, token: str, ctx: dict[str, Any], *, csrf: str, secure: bool,
    error: str | None = None, status: int = 200, username: str = "",
) -> HTMLResponse:  # fmt: skip
    path = f"{invites.INVITE_PATH}{token}"
    response = templates.TemplateResponse(
        request,
        "invite.html",
        {**ctx, "invite_csrf": csrf, "error": error, "username": username, "fragment": False,
         "action": path, "json_url": f"{path}.json"},
        status_code=status,
    )  # fmt: skip
    response.set_cookie(
        INVITE_CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=secure, path=path
    )
    return response


def _open(request: Request, token: str) -> Any:
    try:
        return invites.open_invite(request.app.state.sessions, token)
    except AccountError as exc:
        raise _refusal(exc) from exc


@router.get(
    "/invite/{token}.json",
    summary="An invite link: whether it can be used, its role and study (JSON)",
    responses={**GONE, **errors.responses(404)},
)
def invite_json(request: Request, token: Token) -> dict[str, Any]:
    return _context(_open(request, token))


@router.get(
    "/invite/{token}",
    response_class=HTMLResponse,
    summary="Sign up with an invite link (HTML form)",
    responses={**GONE, **errors.responses(404)},
)
def invite_page(request: Request, settings: SettingsDep, token: Token) -> HTMLResponse:
    ctx = _context(_open(request, token))
    csrf = request.cookies.get(INVITE_CSRF_COOKIE) or secrets.token_urlsafe(32)
    return _signup_page(request, token, ctx, csrf=csrf, secure=settings.cookie_secure)


@router.post(
    "/invite/{token}",
    response_class=HTMLResponse,
    summary="Sign up with an invite link (form post; signs in, on to the study)",
    responses={303: {"description": "Signed up and in"}, **GONE, **errors.responses(403, 404, 409)},
)
async def accept_invite(
    request: Request,
    settings: SettingsDep,
    token: Token,
    username: NewUsername,
    password: NewPassword,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    check_writable(request)
    sessions = request.app.state.sessions
    invite = await run_in_threadpool(_open, request, token)
    fresh, secure = secrets.token_urlsafe(32), settings.cookie_secure
    cookie = request.cookies.get(INVITE_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, csrf_token):
        error = "The form expired or did not come from this page; please try again."
        return _signup_page(request, token, _context(invite), csrf=fresh, secure=secure,
                            error=error, status=403, username=username)  # fmt: skip
    try:
        account = await run_in_threadpool(
            invites.accept_invite, sessions, token, username, password
        )
    except (InviteGone, InviteUnknown) as exc:
        raise _refusal(exc) from exc
    except AccountError as exc:  # a name taken or not allowed, a short password: try again
        status = 409 if isinstance(exc, NameTaken) else 400
        return _signup_page(request, token, _context(invite), csrf=fresh, secure=secure,
                            error=str(exc), status=status, username=username)  # fmt: skip
    ttl = timedelta(hours=settings.session_ttl_hours)
    session_token, _ = await run_in_threadpool(accounts.start_session, sessions, account.id, ttl)
    target = f"/studies/{invite.study_id}" if invite.study_id is not None else "/studies"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, session_token, max_age=int(ttl.total_seconds()), httponly=True,
        samesite="lax", secure=secure, path="/",
    )  # fmt: skip
    response.delete_cookie(INVITE_CSRF_COOKIE, path=f"{invites.INVITE_PATH}{token}")
    return response
