"""The context of ``error.html``: what was wrong (each bad parameter and what it allows) and
the ways back (this page without the bad values, the run, the runs, the API's description)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlencode

from fastapi import Request

from backend import urls
from core.store import reads

log = logging.getLogger(__name__)


def error_page(
    request: Request, status: int, detail: str, errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """error.html's context: what was wrong (each bad parameter and what it allows) and the
    ways back: this page without the bad query parameters, the run, the runs."""
    try:
        title = "Invalid input" if status == 422 else HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    problems = [{"where": _loc_text(e["loc"]), "msg": e["msg"]} for e in errors]
    links: list[dict[str, str]] = []
    bad_query = {str(e["loc"][1]) for e in errors if len(e["loc"]) == 2 and e["loc"][0] == "query"}
    if bad_query and len(bad_query) == len(errors):
        dropped = {*bad_query, "_fragment"}
        kept = [(k, v) for k, v in request.query_params.multi_items() if k not in dropped]
        query = f"?{urlencode(kept)}" if kept else ""
        links.append({"label": "this page without the bad values", "url": request.url.path + query})
    run_id = _known_run(request)
    if run_id is not None and request.url.path != urls.run(run_id):
        links.append({"label": f"the run {run_id}", "url": urls.run(run_id)})
    links.append({"label": "all runs", "url": urls.runs()})
    if status == 404:
        links.append({"label": "the API's description", "url": urls.docs()})
    fragment = request.query_params.get("_fragment") not in (None, "", "0")
    return {
        "status_code": status,
        "title": title,
        "detail": detail,
        "problems": problems,
        "links": links,
        "fragment": fragment,
    }


def _known_run(request: Request) -> str | None:
    """The run named by a ``/runs/<id>/...`` path, if it exists (a link back to it)."""
    parts = request.url.path.split("/")
    if len(parts) < 3 or parts[1] != "runs" or not parts[2]:
        return None
    run_id = unquote(parts[2])
    try:
        with request.app.state.sessions() as session:
            return run_id if reads.get_run(session, run_id) is not None else None
    except Exception:  # the error page must render even when the database does not answer
        log.warning("error page: could not look up run %r", run_id, exc_info=True)
        return None


def _loc_text(loc: list[str | int]) -> str:
    # ("query", "_page") -> "query parameter _page"; ("body", "edits", 0) -> "body.edits.0"
    if len(loc) == 2 and loc[0] in ("query", "path", "header", "cookie"):
        return f"{loc[0]} parameter {loc[1]}"
    return ".".join(str(part) for part in loc)
