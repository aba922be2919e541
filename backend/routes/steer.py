"""Steering routes: the user page (and its JSON twin), per-user and segment steering APIs.

- ``GET  /runs/{run_id}/users/{idx}`` (+ ``.json``): history, the model's top 10, the active
  latents with sliders; ``?_edits=12:2.5,40:-1&_mode=replace`` renders a steered view (the
  shareable URL the page keeps up to date); ``&_fragment=1`` renders only the results block,
  which the page's script swaps in on every slider move.
- ``POST /api/runs/{run_id}/users/{idx}/steer``: rerank for one user (JSON).
- ``POST /api/runs/{run_id}/segment/steer``: the same edits for every test-side user.
- ``GET  /api/runs/{run_id}/steer/latents?q=...&user=...``: latents whose concept matches, to
  add a slider for a latent that is not active.

Validation: a malformed body or a value out of range answers 422 with a message, an unknown
run / user / latent 404 (see :mod:`backend.steering` for the value ranges).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from backend import urls
from backend.deps import TEXT_FILTER_MAX, Context, Idx, RunDep, SessionDep, load_run, page
from backend.errors import responses
from backend.routes.steer_models import (
    EDITS_QUERY_MAX,
    SegmentSteerRequest,
    SteerRequest,
    edits_query,
    parse_edits_query,
    to_edits,
)
from backend.steering import (
    SCALE_MAX,
    SCALE_MIN,
    Edit,
    SegmentResult,
    SteeringEngine,
    SteeringError,
    SteerMode,
    SteerResult,
    UnknownLatentError,
    UnknownUserError,
    engine_for_run,
)
from core.store import reads
from core.store.schema import Latent, Run, User

router = APIRouter(tags=["steering"])
# What the steering routes can answer beyond success: unknown run/user/latent, a value out of
# range, a run whose artifacts are missing or damaged; the POSTs also the sign-in/CSRF checks.
READ_ERRORS = responses(404, 503)
POST_ERRORS = responses(401, 403, 404, 503)

HISTORY_SHOWN = 50  # most recent history items listed on the user page


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


def result_json(engine: SteeringEngine, r: SteerResult) -> dict[str, Any]:
    """The JSON of a steering result; shared by the API and the page context."""
    titles = engine.text.titles
    concept_masks = [
        (rep.latent, engine.latent_concept_mask(rep.latent)) for rep in r.edits if rep.concept
    ]

    def carries(i: int) -> list[int]:
        return [lat for lat, mask in concept_masks if mask is not None and mask[i]]

    base_ids = {it.idx for it in r.base_items}
    return {
        "user": r.user,
        "mode": r.mode.value,
        "items": [
            {
                "rank": it.rank,
                "idx": it.idx,
                "title": titles[it.idx],
                "score": it.score,
                "base_rank": it.base_rank,
                "rank_change": it.rank_change,
                "new": it.idx not in base_ids,
                "is_test_item": it.idx == r.test_item,
                "concepts": carries(it.idx),
            }
            for it in r.items
        ],
        "base_items": [
            {
                "rank": it.rank,
                "idx": it.idx,
                "title": titles[it.idx],
                "score": it.score,
                "is_test_item": it.idx == r.test_item,
                "concepts": carries(it.idx),
            }
            for it in r.base_items
        ],
        "diff": {
            "entered": [{"idx": i, "title": titles[i]} for i in r.entered],
            "left": [{"idx": i, "title": titles[i]} for i in r.left],
            "moved": [{"idx": i, "from": a, "to": b, "by": a - b} for i, a, b in r.moved],
            "changed": bool(r.entered or r.moved),
        },
        "edits": [
            {
                "latent": e.latent,
                "value": e.value,
                "kind": e.kind,
                "activation_before": e.activation_before,
                "activation_after": e.activation_after,
                "concept": e.concept,
                "presence_before": e.presence_before,
                "presence_after": e.presence_after,
            }
            for e in r.edits
        ],
        "test_item": {
            "idx": r.test_item,
            "title": titles[r.test_item],
            "rank_before": r.test_rank_before,
            "rank_after": r.test_rank_after,
        },
    }


def segment_json(r: SegmentResult) -> dict[str, Any]:
    return {
        "mode": r.mode.value,
        "n_users": r.n_users,
        "n_affected": r.n_affected,
        "ndcg@10": {"before": r.ndcg_before, "after": r.ndcg_after},
        "ndcg@10_affected": {"before": r.ndcg_affected_before, "after": r.ndcg_affected_after},
        "latents": [
            {
                "latent": lat.latent,
                "value": lat.value,
                "concept": lat.concept,
                "n_active": lat.n_active,
                "presence": {"before": lat.presence_before, "after": lat.presence_after},
                "share": {"before": lat.share_before, "after": lat.share_after},
            }
            for lat in r.latents
        ],
    }


def _slider(
    engine: SteeringEngine, latent: int, activation: float, value: float | None
) -> dict[str, Any]:
    """One slider's range: scale for an active latent, absolute activation otherwise.

    The absolute range is 100 steps each side of 0 with a 3-significant-digit step (so 0, the
    neutral position, lies on the browser's step grid), a hair inside the engine's limit.
    """
    if activation > 0:
        return {
            "kind": "scale",
            "min": SCALE_MIN,
            "max": SCALE_MAX,
            "step": 0.1,
            "neutral": 1.0,
            "value": 1.0 if value is None else value,
        }
    step = float(f"{engine.absolute_limit(latent) / 100 * 0.999:.3g}")
    lim = float(f"{step * 100:.6g}")
    return {
        "kind": "absolute",
        "min": -lim,
        "max": lim,
        "step": step,
        "neutral": 0.0,
        "value": 0.0 if value is None else value,
    }


def _latent_row(run: Run, idx: int, lat: Latent | None) -> dict[str, Any]:
    """A slider's latent: its link and best concepts (None where the latent has no row)."""
    return {
        "latent": idx,
        "url": urls.latent(run.id, idx),
        "tfidf_concept": None if lat is None else lat.tfidf_concept,
        "tfidf_confidence": None if lat is None else lat.tfidf_confidence,
        "llm_concept": None if lat is None else lat.llm_concept,
        "dead": None if lat is None else lat.dead,
    }


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


@router.post(
    "/api/runs/{run_id}/users/{idx}/steer",
    summary="Steer one user's recommendations",
    responses=POST_ERRORS,
)
async def steer_user(run_id: str, idx: Idx, body: SteerRequest, request: Request) -> JSONResponse:
    """Rerank all items for user ``idx`` with the edits applied; top 10, diff, test-item rank."""
    engine = await _engine_fast(request, run_id)
    if SteerMode(body.mode) is SteerMode.REPLACE and not engine.reconstruction_ready:
        # Replace mode's baseline ranks every user's x̂ once: never on the event loop.
        await run_in_threadpool(engine.reconstruction_lists)
    result = _steer(engine, idx, to_edits(body.edits), body.mode)
    return JSONResponse(result_json(engine, result))


@router.post(
    "/api/runs/{run_id}/segment/steer", summary="Steer every test-side user", responses=POST_ERRORS
)
def steer_segment(body: SegmentSteerRequest, run: RunDep, session: SessionDep) -> JSONResponse:
    """The same scales for every test-side user: NDCG@10 and concept presence before/after."""
    engine = _engine(session, run)
    try:
        result = engine.steer_segment(to_edits(body.edits), body.mode, body.include_inactive)
    except UnknownLatentError as exc:
        raise HTTPException(404, str(exc)) from None
    except SteeringError as exc:
        raise HTTPException(422, str(exc)) from None
    return JSONResponse(segment_json(result))


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
    """Latents whose TF-IDF or LLM concept contains ``q``, most confident first; with ``user``
    each comes with the slider range it gets for that user."""
    engine = _engine(session, run)
    z = None
    if user is not None:
        try:
            engine.check_user(user)
        except UnknownUserError as exc:
            raise HTTPException(404, str(exc)) from None
        z = engine.encode(engine.user_vectors[user])
    rows, total = reads.list_latents(session, run.id, q=q, per_page=limit)
    out = []
    for lat in rows:
        row: dict[str, Any] = {
            "latent": lat.idx,
            "tfidf_concept": lat.tfidf_concept,
            "tfidf_confidence": lat.tfidf_confidence,
            "llm_concept": lat.llm_concept,
        }
        if z is not None:
            act = float(z[lat.idx])
            row["activation"] = act
            row["slider"] = _slider(engine, lat.idx, act, None)
        out.append(row)
    return JSONResponse({"q": q, "total": total, "latents": out})


# --- the user page ----------------------------------------------------------------------------


def _sliders(
    session: SessionDep, run: Run, engine: SteeringEngine, user: int, edits: list[Edit]
) -> list[dict[str, Any]]:
    """The user's active latents (strongest first), then the edited inactive ones, as sliders
    with their latent's concepts (read in one query)."""
    z = engine.encode(engine.user_vectors[user])
    active = [int(i) for i in sorted(map(int, z.nonzero()[0]), key=lambda i: -z[i])]
    edit_values = {e.latent: e.value for e in edits}
    shown = [*active, *(e.latent for e in edits if e.latent not in set(active))]
    latents = reads.latents_by_idx(session, run.id, shown)
    sliders = []
    for lat in shown:
        act = float(z[lat])
        sliders.append(
            {
                **_latent_row(run, lat, latents.get(lat)),
                "activation": act,
                "active": act > 0,
                **_slider(engine, lat, act, edit_values.get(lat)),
            }
        )
    return sliders


def _user_json(session: SessionDep, run: Run, user: User) -> dict[str, Any]:
    """The user's split: the most recent HISTORY_SHOWN history items, dev and test item."""
    shown = list(user.history)[-HISTORY_SHOWN:]
    items = reads.items_by_idx(session, run.id, [*shown, user.dev_item, user.test_item])

    def item_json(i: int) -> dict[str, Any]:
        it = items.get(i)
        return {
            "idx": i,
            "url": urls.item(run.id, i),
            "title": it.title if it else f"item {i}",
            "genres": list(it.genres) if it else [],
            "tags": list(it.tags) if it else [],
        }

    return {
        "idx": user.idx,
        "external_id": user.external_id,
        "side": user.side,
        "history_length": len(user.history),
        "history": [item_json(i) for i in reversed(shown)],  # most recent first
        "dev_item": item_json(user.dev_item),
        "test_item": item_json(user.test_item),
    }


@page(router, "/runs/{run_id}/users/{idx}", "user.html", name="user", responses=READ_ERRORS)
def user_page(
    run: RunDep,
    idx: Idx,
    session: SessionDep,
    edits_raw: Annotated[str | None, Query(alias="_edits", max_length=EDITS_QUERY_MAX)] = None,
    mode: Annotated[SteerMode, Query(alias="_mode")] = SteerMode.ERROR_PRESERVING,
    fragment: Annotated[str | None, Query(alias="_fragment", max_length=TEXT_FILTER_MAX)] = None,
) -> Context:
    """A user: history, the model's top 10, active latents with sliders, the steered list."""
    engine = _engine(session, run)
    edits = parse_edits_query(edits_raw)
    result = _steer(engine, idx, edits, mode)
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
        "steer": result_json(engine, result),
        "api": {
            "steer": f"/api/runs/{run.id}/users/{idx}/steer",
            "search": f"/api/runs/{run.id}/steer/latents",
            "segment": f"/api/runs/{run.id}/segment/steer",
            "page": urls.user(run.id, idx),
        },
    }
    if fragment not in (None, "", "0"):
        return ctx  # the results block only: no history or latent rows needed
    user = reads.get_user(session, run.id, idx)
    if user is None:  # the engine knew it, so the database changed under us
        raise HTTPException(404, f"run {run.id!r} has no user {idx}")
    ctx["user"] = _user_json(session, run, user)
    ctx["sliders"] = _sliders(session, run, engine, idx, edits)
    return ctx
