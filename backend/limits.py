"""Limits every request meets before a route runs: the body's size and the admission caps.

Admission (docs/scaling.md, "Admission"): each route class (light: pages, their JSON, per-user
steering, ``/api/me``; heavy: segment steering; explain: LLM explanations) has its own cap on
the requests running at once in this process (``RECSAE_CONCURRENCY_*``). A request that finds
its class full waits at most ``RECSAE_ADMISSION_WAIT_S`` for a slot (first come, first served;
an explanation as long as ``RECSAE_LLM_EXPLAIN_QUEUE_WAIT_S``; at most ``cap`` requests wait,
more are refused at once), then answers 503 with ``Retry-After`` and a body saying what is
busy: a burst is refused in under a second instead of queueing on the thread pool and the
database pool for 30 s (and then failing with 500s). The caps size the database pool and the
thread pool together (:func:`pool_size`, :func:`thread_tokens`), so an admitted request never
waits on either.

Bodies: ``RECSAE_MAX_BODY_BYTES``, 64 KiB by default.

Every body the app takes is a small JSON document (steering edits) or a form (sign-in), so a
large one is a mistake or an attack: eight 50 MB bodies once took the server from 133 MB to
1 GB. :class:`BodyLimit` is pure ASGI: a declared ``Content-Length`` over the limit is refused
before a byte is read; a body without one (chunked) is counted as it streams, and the read that
crosses the limit raises a 413 ``HTTPException``, which the app answers in the one error shape
(:mod:`backend.errors`). Nothing beyond the limit is ever buffered.
"""

from __future__ import annotations

import asyncio
import json
import re

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings


def too_large_detail(limit: int) -> str:
    return (
        f"Request body too large: at most {limit} bytes are accepted (RECSAE_MAX_BODY_BYTES); "
        "send less"
    )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body crosses the limit (an HTTPException, so
    FastAPI's body parsing passes it on rather than calling it a parse error)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_detail(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            # Read outside the app's exception handlers (e.g. by a middleware): answer here.
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large_detail(self.max_bytes)}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the unread body must not be taken for the next request
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, max_bytes: int) -> None:
    """Refuse request bodies over ``max_bytes`` (0: no limit) on every route of ``app``."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes)


# --- admission --------------------------------------------------------------------------------

LIGHT, HEAVY, EXPLAIN = "light", "heavy", "explain"
_HEAVY_PATH = re.compile(r"/api/runs/[^/]+/segment/steer")
_EXPLAIN_PATH = re.compile(r"/api/runs/[^/]+/latents/[^/]+/explain")
# Files served from memory or disk: no database, no cap (a page's CSS must not be refused
# because pages are busy).
_EXEMPT_PREFIXES = ("/static/", "/vendor/", "/swagger/", "/favicon.ico")
# What a refused client should wait before asking again, per class: a light or heavy request
# takes milliseconds to a second; an explanation takes seconds.
RETRY_AFTER_S = {LIGHT: 1, HEAVY: 1, EXPLAIN: 5}
_ENV = {LIGHT: "RECSAE_CONCURRENCY_LIGHT", HEAVY: "RECSAE_CONCURRENCY_HEAVY",
        EXPLAIN: "RECSAE_CONCURRENCY_EXPLAIN"}  # fmt: skip
_WHAT = {LIGHT: "page and steering", HEAVY: "segment steering", EXPLAIN: "LLM explanation"}


def route_class(method: str, path: str) -> str | None:
    """The admission class of a request (None: exempt)."""
    if path.startswith(_EXEMPT_PREFIXES):
        return None
    if method == "POST" and _HEAVY_PATH.fullmatch(path):
        return HEAVY
    if method == "POST" and _EXPLAIN_PATH.fullmatch(path):
        return EXPLAIN
    return LIGHT


def caps(settings: Settings) -> dict[str, int]:
    caps = {
        LIGHT: settings.concurrency_light,
        HEAVY: settings.concurrency_heavy,
        EXPLAIN: settings.concurrency_explain,
    }
    for name, cap in caps.items():
        if cap < 1:
            raise ValueError(f"{_ENV[name]} must be at least 1, not {cap}")
    return caps


def pool_size(settings: Settings) -> int:
    """Database connections per process: one per admitted request, two for an explanation
    (its request's session and the job that saves the result), and two for the session
    lookup of requests about to be admitted."""
    c = caps(settings)
    return c[LIGHT] + c[HEAVY] + 2 * c[EXPLAIN] + 2


def thread_tokens(settings: Settings) -> int:
    """Worker threads per process (anyio's default limiter): one per connection, plus a few
    for what needs no connection (file reads), so no admitted request waits for a thread while
    holding a connection (the deadlock that held a burst for 30 s)."""
    return pool_size(settings) + 8


def busy_detail(name: str, cap: int) -> str:
    return (
        f"The server is busy: {cap} {_WHAT[name]} request(s) are already running in this "
        f"process ({_ENV[name]}={cap}). Nothing was done; try again in {RETRY_AFTER_S[name]} s."
    )


class Admission:
    """Pure ASGI: a FIFO semaphore per route class; the slot is held until the response is sent."""

    def __init__(self, app: ASGIApp, caps: dict[str, int], waits_s: dict[str, float]) -> None:
        self.app = app
        self.caps = caps
        self.waits_s = waits_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._waiting = dict.fromkeys(caps, 0)

    def _semaphore(self, name: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # one per event loop (a test client may start several)
            self._loop = loop
            self._slots = {n: asyncio.Semaphore(cap) for n, cap in self.caps.items()}
            self._waiting = dict.fromkeys(self.caps, 0)
        return self._slots[name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = route_class(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        slots = self._semaphore(name)
        if slots.locked():
            # At most ``cap`` requests queue behind the running ones; past that no slot can be
            # expected within the wait, so the answer is an immediate 503.
            if self._waiting[name] >= self.caps[name]:
                await self._refuse(send, name, scope["method"] in ("GET", "HEAD"))
                return
            self._waiting[name] += 1
            try:
                async with asyncio.timeout(self.waits_s[name]):
                    await slots.acquire()
            except TimeoutError:
                await self._refuse(send, name, scope["method"] in ("GET", "HEAD"))
                return
            finally:
                self._waiting[name] -= 1
        else:
            await slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()

    async def _refuse(self, send: Send, name: str, bodiless: bool) -> None:
        body = json.dumps({"detail": busy_detail(name, self.caps[name])}).encode()
        headers = [] if bodiless else [(b"connection", b"close")]  # its body is left unread
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S[name]).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install_admission(app: FastAPI, settings: Settings) -> None:
    """Cap the requests running at once per route class (call it after the middleware that
    reads the database, so that it runs first)."""
    wait = settings.admission_wait_s
    # An explanation queues as long as for the LLM's own slots (backend/explain_limits.py).
    waits = {LIGHT: wait, HEAVY: wait, EXPLAIN: max(wait, settings.llm_explain_queue_wait_s)}
    app.add_middleware(Admission, caps=caps(settings), waits_s=waits)
