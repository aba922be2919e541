"""The app's security middleware, installed by :func:`install` in ``create_app``.

From the outside in:

- security headers on every response: a CSP that allows no inline script, nosniff,
  ``Referrer-Policy: same-origin``, ``X-Frame-Options: DENY``;
- the Host header checked against ``RECSAE_ALLOWED_HOSTS`` (DNS rebinding), with Starlette's
  ``TrustedHostMiddleware``;
- a cross-origin check on every unsafe method (POST/PUT/PATCH/DELETE): refused when the browser
  says the request comes from another site (``Sec-Fetch-Site``) or its ``Origin`` is not this
  server's. Requests without those headers (curl, scripts) are not browsers' and pass; a
  browser's cross-site request always carries at least one of them;
- with ``RECSAE_REQUIRE_LOGIN_TO_READ``, every path but /login and static files needs a session.

All are pure ASGI (no ``BaseHTTPMiddleware``): they add nothing measurable to a steering call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import quote

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import urls
from backend.auth import UNSAFE_METHODS, SessionLookup
from core.settings import Settings

# Styles: plotly.js injects <style> elements and style attributes at run time, so styles need
# 'unsafe-inline' (CSS cannot run script); images: plotly's "download as PNG" uses data:/blob:.
CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# /docs is FastAPI's Swagger UI page: one inline <script> that FastAPI writes (no user input).
# It is allowed by its sha256 alone, never by 'unsafe-inline'.
DOCS_PATH = "/docs"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
# Open even when reading needs a session: signing in or up (an invite link), and the files the
# login page loads.
OPEN_PREFIXES = ("/login", "/invite/", "/static/", urls.PLOTLY_JS)


async def _refuse(send: Send, status: int, detail: str) -> None:
    """A JSON ``{"detail": ...}`` answer, the app's one error shape."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == DOCS_PATH:
            await self._docs(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The docs page, buffered (a few KB) so its inline script's hash can go in the CSP."""
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        hashes = " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(s).digest()).decode() + "'"
            for s in _INLINE_SCRIPT.findall(body)
        )
        for message in messages:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in HEADERS.items():
                    headers.setdefault(key, value)
                headers["Content-Security-Policy"] = CSP.replace(
                    "script-src 'self'", f"script-src 'self' {hashes}".rstrip()
                )
            await send(message)


def own_origin(scope: Scope) -> str:
    headers = Headers(scope=scope)
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()


def cross_origin_reason(scope: Scope) -> str | None:
    """Why an unsafe request is refused as coming from another site, or None."""
    headers = Headers(scope=scope)
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site in ("cross-site", "same-site"):
        return f"the browser marked it Sec-Fetch-Site: {fetch_site}"
    origin = headers.get("origin")
    if origin is not None and origin.lower() != own_origin(scope):
        return f"its Origin {origin!r} is not this server's ({own_origin(scope)!r})"
    return None


class SameOriginWrites:
    """Unsafe methods from another origin are refused with 403 before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            reason = cross_origin_reason(scope)
            if reason is not None:
                await _refuse(
                    send,
                    403,
                    f"Cross-origin request refused: {reason}. Use the explorer's own pages.",
                )
                return
        await self.app(scope, receive, send)


class LoginToRead:
    """``RECSAE_REQUIRE_LOGIN_TO_READ``: no page without a session (login and static stay open).

    A browser asking for a page is sent to /login?next=<page>; anything else gets 401 JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope.get("state", {}).get("login") is not None:  # set by auth.SessionLookup
            await self.app(scope, receive, send)
            return
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if wants_page and not path.endswith(".json"):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            location = f"/login?next={quote(target, safe='')}"
            await RedirectResponse(location, status_code=303)(scope, receive, send)
            return
        await _refuse(
            send, 401, "This explorer needs a signed-in account to read: sign in at /login."
        )


def install(app: FastAPI, settings: Settings) -> None:
    """Add the middleware above to ``app`` (the last added runs first)."""
    if settings.require_login_to_read:
        app.add_middleware(LoginToRead)
    app.add_middleware(SessionLookup)
    app.add_middleware(SameOriginWrites)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)
