"""One error shape for every answer that is not a success, and its OpenAPI documentation.

Every error is ``{"detail": str}``, plus ``"errors": [{"loc", "msg", "type"}]`` when a request
failed validation (FastAPI's own 422 carries a list in ``detail``; ours never does). A browser
navigating to a page gets the same message as an HTML page instead (``error.html``). Nothing
here shows a stack trace or an internal path: a broken run artifact (:class:`ArtifactError`)
answers 503 naming the run and the file, anything unexpected a plain 500 (the trace goes to the
server's log).

:func:`install` adds the handlers to an app; :func:`responses` documents statuses on a route.
The messages' words are backend/error_words.py's, the HTML page's context backend/error_page.py's
(both re-exported here).
"""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import get_route_path

from backend.deps import templates
from backend.error_page import error_page
from backend.error_words import nothing_here, validation_errors
from backend.error_words import own_words as own_words  # re-exported
from core.rundir import ArtifactError

log = logging.getLogger(__name__)


class ErrorItem(BaseModel):
    """One validation problem: where (``loc``), what (``msg``), and its kind (``type``)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The one error shape."""

    detail: str = Field(description="what went wrong and, where it can, what to fix")
    errors: list[ErrorItem] | None = Field(None, description="each validation problem (422 only)")


_DESCRIPTIONS = {
    400: "Bad request (e.g. a Host header this server does not answer)",
    401: "Not signed in (mutating routes; every route when reading needs an account)",
    403: "Forbidden (not allowed for this account, or a failed CSRF / Host check)",
    404: "Not found: the message names what does not exist",
    409: "Conflict with the stored data",
    413: "Request body too large",
    422: "Invalid input: the message (and ``errors``) say what to fix",
    429: "Too many requests: see the Retry-After header",
    500: "Unexpected server error",
    502: "The LLM server answered unusably or not at all",
    503: (
        "A run's artifact is missing or corrupt, a service is not configured / busy, or the "
        "database does not answer (then with Retry-After)"
    ),
    504: "The LLM did not answer within the deadline; nothing was saved",
}

RETRY_AFTER = {"description": "seconds to wait before asking again", "schema": {"type": "integer"}}

# What every route can answer whatever it does: the Host check, a closed server's sign-in, the
# body limit (backend/limits.py), input validation, a database that does not answer (every
# request may look up its session) and the unexpected.
COMMON = (400, 401, 413, 422, 500, 503)
# While the database does not answer: how long a client should wait before asking again.
DATABASE_RETRY_AFTER_S = 5
DATABASE_DOWN = (
    "The database is not answering (stopped, restarting, unreachable or overloaded), so this "
    f"request could not be served. Try again in {DATABASE_RETRY_AFTER_S} seconds; if it lasts, "
    "whoever runs the server should check that the database server is up and reachable at "
    "RECSAE_DATABASE_URL."
)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` mapping documenting ``codes`` (plus :data:`COMMON`) with the one shape.

    Documenting 422 replaces FastAPI's default (list-``detail``) 422 schema with ours.
    """
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
        for code in sorted({*codes, *COMMON})
    }
    for code in (429, 503):
        if code in documented:
            documented[code]["headers"] = {"Retry-After": RETRY_AFTER}
    return documented


def wants_html(request: Request) -> bool:
    """A browser navigating to a page gets an HTML error; fetch() calls and .json URLs get JSON."""
    return (
        request.method == "GET"
        and not request.url.path.endswith(".json")
        and not request.url.path.startswith("/api/")
        and "text/html" in request.headers.get("accept", "")
    )


def error_response(
    request: Request,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error as HTML (browsers on pages) or as the one JSON shape (everyone else)."""
    if wants_html(request):
        return templates.TemplateResponse(
            request,
            "error.html",
            error_page(request, status, detail, errors or []),
            status_code=status,
            headers=headers,
        )
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


# The order a method list is written in (RFC 9110 names them in this order).
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (a path such as ``/login`` has a
    GET route and a POST route: Starlette's own 405 names only the first route's methods)."""
    path = get_route_path(request.scope)
    matching = [
        route
        for route in iter_route_contexts(request.app.routes)
        if route.methods and route.path_regex.match(path)
    ]
    if path.endswith(".json"):  # a JSON twin's path: its own methods, not its page's
        matching = [r for r in matching if str(r.path).endswith(".json")] or matching
    methods: set[str] = set()
    for route in matching:
        methods.update(route.methods or ())
    if methods:
        methods.add("OPTIONS")
    return sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    allow = ", ".join(allowed_methods(request)) if exc.status_code == 405 else ""
    if allow:  # a route's 405 (a mounted app's, e.g. /static, keeps its own)
        headers = {**(headers or {}), "Allow": allow}
        if request.method == "OPTIONS":  # what this path answers to (RFC 9110 §9.3.7)
            return Response(status_code=204, headers={"Allow": allow})
        detail = f"{request.method} is not allowed on {request.url.path}: use {allow}"
        return error_response(request, 405, detail, headers=headers)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:  # no route: Starlette's
        detail = nothing_here(request)
    return error_response(request, exc.status_code, detail, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    detail = "; ".join(e["msg"] for e in errors) or "invalid request"
    return error_response(request, 422, detail, errors=errors)


def _hide_paths(request: Request, message: str) -> str:
    """Belt and braces: ArtifactError messages name files relative to the run (see
    docs/architecture.md); should a path slip in, the data directory is not shown."""
    data_dir = request.app.state.settings.data_dir
    for prefix in {str(data_dir.resolve()), str(data_dir)}:
        message = message.replace(prefix + "/", "").replace(prefix, "<data>")
    return message


async def _artifact_error(request: Request, exc: Exception) -> Response:
    log.warning("artifact error on %s %s: %s", request.method, request.url.path, exc)
    # The message names the run, its version and the file, and says what to do (core/rundir.py).
    return error_response(request, 503, _hide_paths(request, str(exc)))


# SQLite's messages for a database it cannot use now (another writer, a missing or unreadable
# file), unlike its schema errors.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open", "disk I/O error")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database does not answer (as opposed to a bad query): the
    driver could not connect or lost the connection, the pool had no connection within its
    timeout, or the database refused for now (SQLite: locked or unreadable)."""
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc.orig, sqlite3.Error):  # its OperationalError is also "no such table"
        return str(exc.orig).startswith(_SQLITE_UNAVAILABLE)
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


async def _database_down(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path,
        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )  # fmt: skip
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    return error_response(request, 503, DATABASE_DOWN, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Reached from the middleware too (the session lookup reads the database before any route).
    if database_unavailable(exc):
        return await _database_down(request, exc)
    # Starlette's ServerErrorMiddleware logs the traceback after this answer is sent.
    return error_response(request, 500, "Internal server error: the server's log has the details")


def _document_error_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """Every documented error's body is the one shape, as JSON (and as a page, for pages).

    FastAPI files a route's extra responses under the route's own media type, so a page's errors
    would read as ``text/html`` bodies shaped like JSON; and routes added by other routers may
    document an error without a model. Both are put right here, once, for every operation.
    """
    ref = {"$ref": "#/components/schemas/ErrorOut"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            page = "text/html" in answers.get("200", {}).get("content", {})
            for code, answer in answers.items():
                if code[:1] in ("4", "5"):
                    answer["content"] = {"application/json": {"schema": ref}}
                    if page:  # a browser navigating to the page gets error.html
                        answer["content"]["text/html"] = {"schema": {"type": "string"}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(components["ErrorOut"].pop("$defs", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Add the error handlers to ``app``: every error in the one shape, no traces, no paths.

    Also documents :data:`COMMON` on every route added after this call (call it before
    ``include_router``): FastAPI merges the app router's ``responses`` into each route's, and a
    documented 422 replaces FastAPI's list-``detail`` one.
    """
    app.router.responses = {**responses(), **app.router.responses}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_error_bodies(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ArtifactError, _artifact_error)
    for unavailable in (OperationalError, InterfaceError, DisconnectionError, PoolTimeout):
        app.add_exception_handler(unavailable, _database_down)
    app.add_exception_handler(Exception, _unexpected)
