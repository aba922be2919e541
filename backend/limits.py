"""A limit on request bodies (issue 8 §4): ``RECSAE_MAX_BODY_BYTES``, 64 KiB by default.

Every body the app takes is a small JSON document (steering edits) or a form (sign-in), so a
large one is a mistake or an attack: eight 50 MB bodies once took the server from 133 MB to
1 GB. :class:`BodyLimit` is pure ASGI: a declared ``Content-Length`` over the limit is refused
before a byte is read; a body without one (chunked) is counted as it streams, and the read that
crosses the limit raises a 413 ``HTTPException``, which the app answers in the one error shape
(:mod:`backend.errors`). Nothing beyond the limit is ever buffered.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
