"""Typed dependencies and the page/JSON-twin machinery every route shares.

``SessionDep`` gives a request its own session; ``RunDep`` / ``LatentDep`` / ``ItemDep`` load a
row or answer 404 with a message naming what does not exist (and what does),
so a mistyped URL tells the user what to fix. :func:`page` registers a page and its JSON twin
from ONE context function, so the two can never drift apart.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_eval_context
from jinja2.filters import do_tojson
from jinja2.nodes import EvalContext
from markupsafe import Markup
from sqlalchemy.orm import Session

from backend import nulls, numbers, urls
from core import safe_text
from core.settings import REPO_ROOT, Settings
from core.store import reads
from core.store.schema import Item, Latent, Run

TEMPLATES_DIR = REPO_ROOT / "frontend" / "templates"
STATIC_DIR = REPO_ROOT / "frontend" / "static"

Context = dict[str, Any]

# --- bounded inputs -------------------------------------------------------------

# The database's INTEGER is 32-bit on PostgreSQL (64-bit on SQLite): an id beyond it cannot
# exist, so it answers 404 like any other missing id, before it reaches a query (where it would
# overflow the driver's integer conversion).
DB_INT_MAX = 2**31 - 1
# Every free-text filter (``q`` and its kin) is capped at this many characters: a concept is a
# short phrase, and SQLite refuses LIKE patterns past its own limit.
TEXT_FILTER_MAX = 200

Idx = Annotated[
    int,
    Path(
        ge=0,
        description=f"0-based index; one past the run's count or past {DB_INT_MAX} is a 404",
    ),
]


# --- settings and sessions -------------------------------------------------------------------


def get_settings(request: Request) -> Settings:
    """The Settings the app was created with (tests pass their own; never re-read the env)."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


# --- rows that must exist ---------------------------------------------------------------------


def load_run(run_id: str, session: SessionDep) -> Run:
    run = reads.get_run(session, run_id)
    if run is None:
        known = reads.run_ids(session)
        hint = f"published runs: {', '.join(known)}" if known else "no run is published yet"
        raise HTTPException(404, f"unknown run {run_id!r}; {hint}")
    return run


RunDep = Annotated[Run, Depends(load_run)]


def _range_hint(count: int, what: str) -> str:
    return f"it has {count} {what} (0–{count - 1})" if count else f"it has no {what}"


def load_latent(run: RunDep, idx: Idx, session: SessionDep) -> Latent:
    latent = reads.get_latent(session, run.id, idx) if idx <= DB_INT_MAX else None
    if latent is None:
        raise HTTPException(
            404, f"run {run.id!r} has no latent {idx}; {_range_hint(run.n_latents, 'latents')}"
        )
    return latent


def load_item(run: RunDep, idx: Idx, session: SessionDep) -> Item:
    item = reads.get_item(session, run.id, idx) if idx <= DB_INT_MAX else None
    if item is None:
        raise HTTPException(
            404,
            f"run {run.id!r} has no {run.item_name} {idx}; {_range_hint(run.n_items, 'items')}",
        )
    return item


LatentDep = Annotated[Latent, Depends(load_latent)]
ItemDep = Annotated[Item, Depends(load_item)]


# --- templates ---------------------------------------------------------------------------------


def fmt(value: object, digits: int = 4) -> str:
    """A number as people read it: ints with separators, floats to ``digits`` significant."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value == 0 or 1e-4 <= abs(value) < 1e6:
            return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{max(digits - 2, 1)}f}"
        return numbers.scientific(value, digits)  # "3.0 × 10⁻⁵", never "3.0e-05"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _visible(value: object) -> object:
    """Jinja's ``finalize``: text as :func:`core.safe_text.visible`; markup (``tojson``,
    ``|safe``) and non-text values pass as they are."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return safe_text.visible(value)
    return value


@pass_eval_context
def tojson(eval_ctx: EvalContext, value: object, indent: int | None = None) -> Markup:
    """Jinja's ``tojson`` with every string spelled out as :func:`core.safe_text.visible_data`
    (the figures and data that scripts draw: ``finalize`` never sees inside them)."""
    return do_tojson(eval_ctx, safe_text.visible_data(value), indent)


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals["urls"] = urls
templates.env.globals["static_url"] = urls.static  # content-hashed (backend/assets.py)
templates.env.filters["fmt"] = fmt
templates.env.filters["pct"] = pct
templates.env.filters["conf"] = nulls.conf  # every confidence and null percentile: 0.86
templates.env.filters["duration"] = numbers.duration
templates.env.filters["words"] = numbers.words
templates.env.filters["when"] = numbers.when
templates.env.filters["tojson"] = tojson
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
# Every printed value: control and bidi characters spelled out ("[U+202E]"), so stored text
# (LLM explanations, concepts, names) reads as what it holds (core/safe_text.py).
templates.env.finalize = _visible


def page(
    router: APIRouter,
    path: str,
    template: str,
    *,
    name: str,
    responses: dict[int | str, dict[str, Any]] | None = None,
) -> Callable[[Callable[..., Context]], Callable[..., Context]]:
    """Register ``path`` (HTML from ``template``) and ``path + ".json"`` from one context function.

    The context function is a FastAPI dependency, so its parameters (path and query parameters,
    ``SessionDep``, ``RunDep``...) are resolved the usual way and documented in /docs through the
    JSON route. It must return plain JSON-able data: the twin returns it as is. ``?_fragment=1``
    renders the template without the page chrome (templates extend ``_bare.html`` then), so the
    list's filter form can swap the table in place. ``responses`` documents the errors both can
    answer (``backend.errors.responses``).
    """

    def register(context: Callable[..., Context]) -> Callable[..., Context]:
        def as_json(ctx: Context) -> JSONResponse:
            return json_response(ctx)

        def as_html(request: Request, ctx: Context) -> HTMLResponse:
            fragment = request.query_params.get("_fragment") not in (None, "", "0")
            return templates.TemplateResponse(
                request, template, {**ctx, "fragment": fragment, "json_url": json_url(request)}
            )

        # Real objects, not the strings `from __future__ import annotations` would leave:
        # FastAPI cannot resolve a closure's local `context` from a string annotation.
        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[dict, Depends(context)]
        )
        request_param = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
        )
        as_json.__signature__ = inspect.Signature([ctx_param], return_annotation=JSONResponse)  # type: ignore[attr-defined]
        as_html.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [request_param, ctx_param], return_annotation=HTMLResponse
        )

        summary = (context.__doc__ or name).strip().splitlines()[0]
        # The JSON route first: "/runs/{run_id}" would otherwise swallow "/runs/x.json".
        router.add_api_route(
            urls.as_json(path),
            as_json,
            methods=["GET"],
            name=f"{name}_json",
            summary=summary,
            responses=responses,
        )
        router.add_api_route(
            path,
            as_html,
            methods=["GET"],
            name=name,
            response_class=HTMLResponse,
            summary=f"{summary} (HTML)",
            responses=responses,
        )
        return context

    return register


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_response(ctx: Context) -> JSONResponse:
    """The context as JSON, as is: contexts are plain data by contract (no jsonable_encoder,
    which costs more than building the page). NaN/inf, which JSON cannot carry, become null."""
    try:
        return JSONResponse(ctx)
    except ValueError:  # "Out of range float values are not JSON compliant"
        return JSONResponse(_finite(ctx))


def json_url(request: Request) -> str:
    """This page's JSON twin, with the same query string."""
    path = urls.as_json(request.url.path)
    return f"{path}?{request.url.query}" if request.url.query else path
