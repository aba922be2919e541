"""Steering routes: the user page (and its JSON twin), per-user and segment steering APIs.

- ``GET  /runs/{run_id}/users/{idx}`` (+ ``.json``): history, the model's top 10, the active
  latents with sliders; ``?_edits=12:2.5,40:-1&_mode=replace`` renders a steered view (the
  shareable URL the page keeps up to date) with the baseline and steered lists side by side and
  each steered item's score split ("why this item", :mod:`backend.steering.why`);
  ``&_fragment=1`` renders only the results block, which the page's script swaps in on every
  slider move.
- ``GET  /runs/{run_id}/users/{idx}/why.json?item=...``: any item's score split for the user.
- ``POST /api/runs/{run_id}/users/{idx}/steer``: rerank for one user (JSON).
- ``POST /api/runs/{run_id}/segment/steer``: the same edits for every test-side user, each
  change with a 95% CI.
- ``GET  /api/runs/{run_id}/steer/latents?q=...&user=...``: latents whose concept matches, to
  add a slider for a latent that is not active.

Validation: a malformed body or a value out of range answers 422 with a message, an unknown
run / user / latent 404 (see :mod:`backend.steering` for the value ranges). A bad ``_edits`` on
the user page is refused beside the slider: a browser gets the page (unsteered, the message by
the sliders) with the 4xx status, the fragment and the JSON twin the one error shape.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from backend import urls
from backend.deps import (
    DB_INT_MAX,
    TEXT_FILTER_MAX,
    Context,
    Idx,
    RunDep,
    SessionDep,
    json_response,
    json_url,
    load_run,
    templates,
)
from backend.errors import responses, wants_html
from backend.routes.steer_models import (
    EDITS_PATTERN,
    EDITS_QUERY_MAX,
    UNIQUE_LATENTS,
    SegmentSteerRequest,
    SteerRequest,
    edits_query,
    parse_edits_query,
    to_edits,
)
from backend.routes.steer_views import (
    result_json,
    segment_json,
    slider,
    sliders,
    user_json,
    why_json,
)
from backend.steering import (
    Edit,
    SteeringEngine,
    SteeringError,
    SteerMode,
    SteerResult,
    UnknownItemError,
    UnknownLatentError,
    UnknownUserError,
    engine_for_run,
)
from backend.steering.cache import finite_json, refuse_non_finite
from core.store import browse, reads
from core.store.schema import Run

router = APIRouter(tags=["steering"])
# The two steering POSTs, included before every other router (backend/app.py): the hot API path
# is the first route the app tries, instead of the last of ~60 (FastAPI matches routers in turn;
# measured 11% of an in-process steer of a 2,000-item run). No other route has these paths.
api_router = APIRouter(tags=["steering"])
# What the steering routes can answer beyond success: unknown run/user/latent, a value out of
# range, a run whose artifacts are missing or damaged; the POSTs also the sign-in/CSRF checks.
READ_ERRORS = responses(404, 503)
POST_ERRORS = responses(401, 403, 404, 503)

# --- helpers ----------------------------------------------------------------------------------


def _engine(session: SessionDep, run: Run) -> SteeringEngine:
    return engine_for_run(session, run)


def _steer(engine: SteeringEngine, user: int, edits: list[Edit], mode: SteerMode) -> SteerResult:
    try:
        return engine.steer(user, edits, mode)
    except (UnknownUserError, UnknownLatentError) as exc:
        raise HTTPException(404, str(exc)) from None
    except SteeringError as exc:
        raise HTTPException(422, str(exc)) from None


# --- API --------------------------------------------------------------------------------------


# A steering request re-reads its run row at most this often (per app and run). Within the
# window the engine is used without touching the database or the thread pool: the hot path is
# one event-loop callback with ~1 ms of numpy. A run re-published or deleted is noticed within it.
RUN_RECHECK_S = 1.0


async def _engine_fast(request: Request, run_id: str) -> SteeringEngine:
    """The run's engine for the hot API path; 404 (via ``deps.load_run``) for an unknown run."""
    recent: dict[str, tuple[float, SteeringEngine]] | None = getattr(
        request.app.state, "steer_recent", None
    )
    if recent is None:
        recent = request.app.state.steer_recent = {}
    now = time.monotonic()
    hit = recent.get(run_id)
    if hit is not None and now - hit[0] < RUN_RECHECK_S:
        return hit[1]

    def load() -> SteeringEngine:
        with request.app.state.sessions() as session:
            return engine_for_run(session, load_run(run_id, session))

    # First use builds the engine (seconds on a large run): never on the event loop.
    engine = await run_in_threadpool(load)
    recent[run_id] = (now, engine)
    return engine


@api_router.post(
    "/api/runs/{run_id}/users/{idx}/steer",
    summary="Steer one user's recommendations",
    responses=POST_ERRORS,
)
async def steer_user(run_id: str, idx: Idx, body: SteerRequest, request: Request) -> Response:
    """Rerank all items for user ``idx`` with the edits applied; top 10, diff, test-item rank."""
    engine = await _engine_fast(request, run_id)
    if SteerMode(body.mode) is SteerMode.REPLACE and not engine.reconstruction_ready:
        # Replace mode's baseline ranks every user's x̂ once: never on the event loop.
        await run_in_threadpool(engine.reconstruction_lists)
    result = _steer(engine, idx, to_edits(body.edits), body.mode)
    answer = finite_json(engine, result_json(engine, result), f"user {idx}'s steering")
    return Response(answer, media_type="application/json")


@api_router.post(
    "/api/runs/{run_id}/segment/steer", summary="Steer every test-side user", responses=POST_ERRORS
)
async def steer_segment(body: SegmentSteerRequest, run_id: str, request: Request) -> Response:
    """The same scales for every test-side user: NDCG@10 and concept presence before/after."""
    # No database session is held while the segment is steered (tens to hundreds of ms): the
    # engine comes from the recent-run cache (docs/scaling.md, "Admission").
    engine = await _engine_fast(request, run_id)

    def steer() -> bytes:
        try:
            result = engine.steer_segment(to_edits(body.edits), body.mode, body.include_inactive)
        except UnknownLatentError as exc:
            raise HTTPException(404, str(exc)) from None
        except SteeringError as exc:
            raise HTTPException(422, str(exc)) from None
        return finite_json(engine, segment_json(result), "the segment's steering")

    return Response(await run_in_threadpool(steer), media_type="application/json")


@router.get(
    "/api/runs/{run_id}/steer/latents",
    summary="Find latents to steer by concept",
    responses=READ_ERRORS,
)
def search_latents(
    run: RunDep,
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=TEXT_FILTER_MAX)],
    user: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> JSONResponse:
    """Latents whose TF-IDF or LLM concept contains ``q``: those confirmed on output first
    (docs/method.md §1.9), then by confidence; with ``user`` each comes with the slider range it
    gets for that user."""
    z = None
    if user is not None:  # the search itself needs no artifacts, only the slider ranges
        engine = _engine(session, run)
        try:
            engine.check_user(user)
        except UnknownUserError as exc:
            raise HTTPException(404, str(exc)) from None
        z = engine.encode(engine.user_vectors[user])
    rows, total = browse.search_by_concept(session, run.id, q, limit)
    out = []
    for lat in rows:
        row: dict[str, Any] = {
            "latent": lat.idx,
            "tfidf_concept": lat.tfidf_concept,
            "tfidf_confidence": lat.tfidf_confidence,
            "llm_concept": lat.llm_concept,
            "tfidf_output": lat.tfidf_output,
            "llm_output": lat.llm_output,
        }
        if z is not None:
            act = float(z[lat.idx])
            row["activation"] = act
            row["slider"] = slider(engine, lat.idx, act, None)
        out.append(row)
    if user is not None:
        refuse_non_finite(engine, out, f"user {user}'s activations")
    return JSONResponse({"q": q, "total": total, "latents": out})


# --- the user page ----------------------------------------------------------------------------

USER_PAGE = "/runs/{run_id}/users/{idx}"
EditsQuery = Annotated[
    str | None,
    Query(
        alias="_edits",
        max_length=EDITS_QUERY_MAX,
        description=f"the sliders, latent:value pairs, e.g. 12:2.5,40:-1; {UNIQUE_LATENTS}",
        # Stated, not enforced here: parse_edits_query checks it, so that the user page can
        # refuse a bad value beside its slider (the page kept) instead of a bare error page.
        json_schema_extra={"pattern": EDITS_PATTERN},
    ),
]
ModeQuery = Annotated[SteerMode, Query(alias="_mode")]


def _steer_view(
    engine: SteeringEngine, idx: int, edits_raw: str | None, mode: SteerMode
) -> tuple[list[Edit], SteerResult, dict[str, Any] | None]:
    """(edits, result, refusal): a bad ``_edits`` is refused (``refusal`` says why, and which
    latent where it can) and the unsteered view shown instead; an unknown user is a 404 page."""
    try:
        engine.check_user(idx)
    except UnknownUserError as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        edits = parse_edits_query(edits_raw)
        return edits, engine.steer(idx, edits, mode), None
    except UnknownLatentError as exc:
        refusal = {"status": 404, "detail": str(exc), "latent": None}
    except SteeringError as exc:
        refusal = {"status": 422, "detail": str(exc), "latent": exc.latent}
    refusal["detail"] = f"Refused: {refusal['detail']}."
    return [], engine.steer(idx, [], mode), refusal


def _refusal_response(refusal: dict[str, Any]) -> JSONResponse:
    """The refusal in the one error shape (``errors`` for a 422, its loc naming the latent)."""
    body: dict[str, Any] = {"detail": refusal["detail"]}
    if refusal["status"] == 422:
        loc: list[str | int] = ["query", "_edits"]
        if refusal["latent"] is not None:
            loc.append(refusal["latent"])
        body["errors"] = [{"loc": loc, "msg": refusal["detail"], "type": "value_error"}]
    return JSONResponse(body, status_code=refusal["status"])


def user_context(
    run: RunDep,
    idx: Idx,
    session: SessionDep,
    edits_raw: EditsQuery = None,
    mode: ModeQuery = SteerMode.ERROR_PRESERVING,
    fragment: Annotated[str | None, Query(alias="_fragment", max_length=TEXT_FILTER_MAX)] = None,
) -> Context:
    """A user: history, the baseline and steered top 10 side by side, each steered item's score
    split, active latents with sliders."""
    engine = _engine(session, run)
    edits, result, refusal = _steer_view(engine, idx, edits_raw, mode)
    ctx: Context = {
        "run": {
            "id": run.id,
            "dataset": run.dataset,
            "recommender": run.recommender,
            "item_name": run.item_name,
            "item_category": run.item_category,
            "url": urls.run(run.id),
        },
        "user_idx": idx,
        "mode": mode.value,
        "edits": [{"latent": e.latent, "value": e.value} for e in edits],
        "edits_query": edits_query(edits),
        "refusal": refusal,
        "steer": result_json(engine, result),
        "why": why_json(
            engine,
            idx,
            edits,
            mode,
            [it.idx for it in result.items],
            [it.score for it in result.items],
        ),
        "api": {
            "steer": f"/api/runs/{run.id}/users/{idx}/steer",
            "search": f"/api/runs/{run.id}/steer/latents",
            "segment": f"/api/runs/{run.id}/segment/steer",
            "why": f"{urls.user(run.id, idx)}/why.json",
            "page": urls.user(run.id, idx),
        },
    }
    refuse_non_finite(engine, ctx, f"user {idx}'s steering")
    if fragment not in (None, "", "0"):
        return ctx  # the results block only: no history or latent rows needed
    user = reads.get_user(session, run.id, idx)
    if user is None:  # the engine knew it, so the database changed under us
        raise HTTPException(404, f"run {run.id!r} has no user {idx}")
    ctx["user"] = user_json(session, run, user)
    ctx["sliders"] = sliders(session, run, engine, idx, edits)
    refuse_non_finite(engine, ctx["sliders"], f"user {idx}'s activations")
    return ctx


UserContext = Annotated[dict, Depends(user_context)]


# The JSON twin first: "{idx}" would otherwise be tried on "0.json" (and refuse it as no int).
@router.get(urls.as_json(USER_PAGE), name="user_json", summary="A user", responses=READ_ERRORS)
def user_page_json(ctx: UserContext) -> Response:
    """A user: history, the baseline and steered top 10 side by side, each steered item's score
    split, active latents with sliders (a bad ``_edits`` answers 422 / 404)."""
    if ctx["refusal"] is not None:
        return _refusal_response(ctx["refusal"])
    return json_response(ctx)


@router.get(
    USER_PAGE,
    name="user",
    summary="A user (HTML)",
    response_class=HTMLResponse,
    responses=READ_ERRORS,
)
def user_page(request: Request, ctx: UserContext) -> Response:
    """The user page; a bad ``_edits`` renders the page unsteered with the refusal beside the
    sliders and the refusal's status (scripts and non-browsers get the one error shape)."""
    refusal = ctx["refusal"]
    fragment = request.query_params.get("_fragment") not in (None, "", "0")
    if refusal is not None and (fragment or not wants_html(request)):
        return _refusal_response(refusal)
    return templates.TemplateResponse(
        request,
        "user.html",
        {**ctx, "fragment": fragment, "json_url": json_url(request)},
        status_code=200 if refusal is None else refusal["status"],
    )


@router.get(
    f"{USER_PAGE}/why.json",
    name="user_why_json",
    summary="Why this item: a score split into the SAE's parts",
    responses=READ_ERRORS,
)
def why_item(
    run: RunDep,
    idx: Idx,
    session: SessionDep,
    item: Annotated[int, Query(ge=0, le=DB_INT_MAX, description="the item's 0-based index")],
    edits_raw: EditsQuery = None,
    mode: ModeQuery = SteerMode.ERROR_PRESERVING,
) -> JSONResponse:
    """Item ``item``'s score for user ``idx`` (after ``_edits`` in ``_mode``) split into each
    non-zero latent's z'_l (W_dec[l] · e_i), the decoder bias b_dec · e_i and the SAE's error
    term (x − x̂) · e_i; they add up to ``score`` (docs/method.md §6.4)."""
    engine = _engine(session, run)
    try:
        edits = parse_edits_query(edits_raw)
        [why] = why_json(engine, idx, edits, mode, [item])
    except (UnknownUserError, UnknownLatentError, UnknownItemError) as exc:
        raise HTTPException(404, str(exc)) from None
    except SteeringError as exc:
        raise HTTPException(422, str(exc)) from None
    refuse_non_finite(engine, why, f"item {item}'s score parts for user {idx}")
    return JSONResponse(
        {"user": idx, "mode": mode.value, "edits_query": edits_query(edits), "item": why}
    )
