"""Human evaluation (docs/method.md §5): studies, their annotators, the blind
annotation page and rating submissions. Results are in backend/routes/study_results.py; the
studies list and the designer that creates a study in backend/routes/study_designer.py.

Who may do what: admins create studies, assign annotators, open and close them; an annotator
sees only the studies assigned to them (403 elsewhere) and rates only there. The annotation
page is blind: the concept's text and its examples, never its confidence, its method or
anyone else's ratings. Forms work without JavaScript; frontend/static/annotate.js adds the
keys (1–4 rate, S skip, Backspace back).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from backend import urls
from backend.auth import AccountDep, AdminDep
from backend.deps import DB_INT_MAX, Context, SessionDep, page
from backend.errors import responses
from core import studies, study_reads
from core.store.schema import Account, Run, Study, StudyItem

router = APIRouter(tags=["studies"])

StudyId = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="the study's id")]

SCALE = [
    (4, "Highly relevant: the concept names what the examples have in common, and nearly all "
        "of them fit it"),
    (3, "Relevant: the concept fits most examples, with exceptions or a looser fit"),
    (2, "Somewhat relevant: the concept touches some examples but misses what most share"),
    (1, "Not relevant: the concept does not describe the examples"),
]  # fmt: skip  # docs/method.md §5 (after paper §5.4)


def study_url(study_id: int, part: str = "") -> str:
    return f"/studies/{study_id}{part}"


def load_study(study_id: StudyId, session: SessionDep) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise HTTPException(404, f"no study {study_id}; the studies you may see are at /studies")
    return study


StudyDep = Annotated[Study, Depends(load_study)]


def check_assigned(session: SessionDep, study: Study, account: Account) -> None:
    if not studies.is_assigned(session, study.id, account.id):
        raise HTTPException(403, f"{account.username!r} is not assigned to study {study.id}")


def check_may_see(session: SessionDep, study: Study, account: Account) -> None:
    if account.role != "admin":
        check_assigned(session, study, account)


def version_note(study: Study, current: int | None) -> str | None:
    """Says so when the run has moved on from the version the study sampled."""
    if study.run_version is None or current is None or current == study.run_version:
        return None
    return f"on version {study.run_version}; the run is now on version {current}"


def study_row(study: Study, current: int | None = None) -> dict[str, Any]:
    """A study's settings; ``current``: its run's version now (for the version note)."""
    return {
        "id": study.id, "name": study.name, "run_id": study.run_id, "status": study.status,
        "run_version": study.run_version, "version_note": version_note(study, current),
        "size": study.size, "min_confidence": study.min_confidence, "methods": study.methods,
        "seed": study.seed, "created_at": study.created_at.isoformat(), "url": study_url(study.id),
        "annotate_url": study_url(study.id, "/annotate"),
        "results_url": study_url(study.id, "/results"),
    }  # fmt: skip


@page(router, "/studies/{study_id}", "study.html", name="study", responses=responses(403, 404))
def study_page(study: StudyDep, account: AccountDep, session: SessionDep) -> Context:
    """One study: its settings, annotators and their progress (admins), one's own progress."""
    check_may_see(session, study, account)
    study_items = study_reads.items(session, study.id)
    total = len(study_items)
    counts = study_reads.rating_counts(session, study.id)
    skips = study_reads.skip_counts(session, study.id)
    people = study_reads.annotators(session, study.id)
    is_admin = account.role == "admin"
    run = session.get(Run, study.run_id)
    return {
        "study": study_row(study, run.version if run is not None else None),
        "items": total,
        "is_admin": is_admin,
        "assigned": any(a.id == account.id for a in people),
        # Answered = rated on the scale + skipped; done when every item is answered.
        "my_rated": counts.get(account.id, 0) - skips.get(account.id, 0),
        "my_skipped": skips.get(account.id, 0),
        "my_done": total > 0 and counts.get(account.id, 0) >= total,
        "annotators": [
            {"username": a.username, "rated": counts.get(a.id, 0) - skips.get(a.id, 0),
             "skipped": skips.get(a.id, 0)}
            for a in people
        ] if is_admin else [],
        "scale": [{"value": v, "meaning": m} for v, m in SCALE],
        # What was sampled (admins only: raters must not see the method, docs/method.md §5).
        "sampled": [
            {"position": i.position + 1, "latent": i.latent_idx, "method": i.method,
             "concept": i.text, "url": urls.latent(study.run_id, i.latent_idx)}
            for i in study_items
        ] if is_admin else [],
    }  # fmt: skip


def _examples(session: SessionDep, study: Study, item: StudyItem) -> dict[str, list[Any]]:
    """What the item's raters see: the examples copied when the study was made; a study made
    before they were copied reads them live while its run is still on the study's version."""
    if item.shown is not None:
        return item.shown
    run = session.get(Run, study.run_id)
    if run is not None and study.run_version in (None, run.version):
        return study_reads.examples_shown(session, study.run_id, item.latent_idx)
    return {"construction": [], "verification": []}


@page(
    router, "/studies/{study_id}/annotate", "annotate.html", name="annotate",
    responses=responses(403, 404),
)  # fmt: skip
def annotate_page(
    study: StudyDep,
    account: AccountDep,
    session: SessionDep,
    n: Annotated[int | None, Query(ge=0, le=DB_INT_MAX, description="item position")] = None,
) -> Context:
    """The blind annotation page for one item (default: the first one not yet rated)."""
    check_assigned(session, study, account)
    all_items = study_reads.items(session, study.id)
    mine = study_reads.own_ratings(session, study.id, account.id)
    if n is None:
        unrated = [i.position for i in all_items if (i.latent_idx, i.concept_id) not in mine]
        n = unrated[0] if unrated else 0
    if n >= len(all_items):
        raise HTTPException(
            404, f"study {study.id} has {len(all_items)} items (0–{len(all_items) - 1})"
        )
    item = all_items[n]
    rating = mine.get((item.latent_idx, item.concept_id))
    base = study_url(study.id, "/annotate")
    return {
        "study": {
            "id": study.id,
            "name": study.name,
            "status": study.status,
            "url": study_url(study.id),
        },
        "position": n,
        "total": len(all_items),
        "rated": len(mine),
        "progress": len(mine) / len(all_items) if all_items else 0.0,
        "concept": item.text,
        "examples": _examples(session, study, item),
        "mine": {"value": rating.value, "skip_reason": rating.skip_reason} if rating else None,
        "scale": [{"value": v, "meaning": m} for v, m in SCALE],
        "links": {
            "submit": study_url(study.id, "/ratings"),
            "prev": f"{base}?n={n - 1}" if n > 0 else None,
            "next": f"{base}?n={n + 1}" if n + 1 < len(all_items) else None,
        },
    }


# --- writes ------------------------------------------------------------------------------------

DONE: dict[int | str, dict[str, Any]] = {303: {"description": "Done: on to the next page"}}


def study_error(exc: Exception) -> HTTPException:
    if isinstance(exc, studies.StudyClosed):
        return HTTPException(409, str(exc))
    if isinstance(exc, studies.StudyNotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, PermissionError):
        return HTTPException(403, str(exc))
    return HTTPException(400, str(exc))


@router.post(
    "/studies/{study_id}/annotators",
    summary="Assign an annotator (admin, form post)",
    responses={**DONE, **responses(403, 404)},
)
def assign_annotator(
    request: Request,
    _admin: AdminDep,
    study: StudyDep,
    username: Annotated[str, Form(min_length=1, max_length=64)],
) -> Response:
    try:
        studies.assign(request.app.state.sessions, study.id, [username])
    except studies.StudyError as exc:
        raise study_error(exc) from exc
    return RedirectResponse(study_url(study.id), status_code=303)


@router.post(
    "/studies/{study_id}/status",
    summary="Open or close a study (admin, form post); closing freezes its ratings",
    responses={**DONE, **responses(403, 404)},
)
def set_status(
    request: Request,
    _admin: AdminDep,
    study: StudyDep,
    status: Annotated[str, Form(pattern="^(open|closed)$")],
) -> Response:
    studies.set_status(request.app.state.sessions, study.id, status)
    return RedirectResponse(study_url(study.id), status_code=303)


def _rating_schema(schema: dict[str, Any]) -> None:
    """A form field is sent or left out, never null: ``value`` is an integer (empty: none)."""
    for key in ("anyOf", "ge", "le"):
        schema.pop(key, None)
    schema.update(type="integer", minimum=1, maximum=4)


# A rating has a value, or it is a skip with a reason (core/studies.py); the form's schema says so.
_VALUE_OR_REASON = {
    "anyOf": [
        {"required": ["value"]},
        {"required": ["skip_reason"], "properties": {"skip_reason": {"pattern": "\\S"}}},
    ]
}


@router.post(
    "/studies/{study_id}/ratings",
    summary="Rate one item 1–4, or skip it with a reason (form post; JSON answer on request)",
    responses={**DONE, **responses(403, 404, 409)},
    openapi_extra={
        "requestBody": {
            "content": {"application/x-www-form-urlencoded": {"schema": _VALUE_OR_REASON}}
        }
    },
)
def submit_rating(
    request: Request,
    account: AccountDep,
    study_id: StudyId,
    position: Annotated[int, Form(ge=0, le=DB_INT_MAX)],
    value: Annotated[
        int | None,
        Form(
            ge=1,
            le=4,
            description="1–4; left out (or empty): a skip",
            json_schema_extra=_rating_schema,
        ),
    ] = None,
    skip_reason: Annotated[str | None, Form(max_length=studies.SKIP_REASON_MAX)] = None,
) -> Response:
    """Record the signed-in annotator's rating of the item at ``position`` (a second submission
    changes it, while the study is open; no such study or item: 404). Answers 303 to the next
    item, or JSON when the request accepts ``application/json``."""
    try:
        result, more = studies.rate_at(
            request.app.state.sessions, study_id, account.id, position, value, skip_reason
        )
    except (studies.StudyError, studies.StudyNotFound, PermissionError) as exc:
        raise study_error(exc) from exc
    following = study_url(study_id, f"/annotate?n={position + 1}" if more else "")
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {
                "rating_id": result.rating_id,
                "created": result.created,
                "changed": result.changed,
                "next": following,
            }
        )
    return RedirectResponse(following, status_code=303)
