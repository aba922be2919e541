"""The studies list and the study designer (docs/method.md §5). Everyone sees the studies they
may see; admins also get the designer: a filter that finds the latents to rate (run, concept
text, methods, verdict, confidence floor), and the form post that creates a study from the ticked
(or listed) latents, or from a random sample. Both work without JavaScript. One study's pages,
annotation and ratings are backend/routes/studies.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from backend import urls
from backend.auth import AccountDep, AdminDep
from backend.deps import DB_INT_MAX, TEXT_FILTER_MAX, Context, SessionDep, page
from backend.errors import responses
from backend.nulls import VERDICT_TEXT
from backend.routes.studies import DONE, study_error, study_row, study_url
from core import studies, study_design, study_reads
from core.reports import VERDICTS
from core.store import reads

router = APIRouter(tags=["studies"])


def _designer(
    session: SessionDep, run: str, q: str, methods: str, verdict: str, min_confidence: float
) -> dict[str, Any]:
    """The designer's filter (docs/method.md §5): what was asked and, once a run is chosen, the
    latents that match (each with the concepts a study would rate) — ticked boxes of the form."""
    asked = {"run": run, "q": q, "methods": methods, "verdict": verdict,
             "min_confidence": min_confidence}  # fmt: skip
    if not run:
        return {"filter": asked, "candidates": None, "matched": 0, "shown": 0}
    try:
        rows, matched = study_design.candidates(
            session, run, methods=methods, min_confidence=min_confidence, text=q,
            verdict_code=verdict or None,
        )  # fmt: skip
    except (studies.StudyError, studies.StudyNotFound) as exc:
        raise study_error(exc) from exc
    for row in rows:
        row["url"] = urls.latent(run, row["latent"])
        for c in row["concepts"]:
            c["verdict_text"] = VERDICT_TEXT.get(c["verdict"]) if c["verdict"] else None
    return {"filter": asked, "candidates": rows, "matched": matched, "shown": len(rows)}


# core.reports.VERDICTS, or empty for any (tests/backend/test_study_designer.py checks they agree)
Verdict = Literal["", "verified", "not_over_null", "below", "no_null", "degenerate"]


@page(router, "/studies", "studies.html", name="studies", responses=responses(403, 404))
def study_list(
    account: AccountDep,
    session: SessionDep,
    run: Annotated[
        str, Query(max_length=64, description="designer (admins): the run whose latents to find")
    ] = "",
    q: Annotated[
        str, Query(max_length=TEXT_FILTER_MAX, description="designer: substring of a concept")
    ] = "",
    methods: Annotated[
        Literal["tfidf", "llm", "both"], Query(description="designer: whose concepts are rated")
    ] = studies.DEFAULT_METHODS,  # type: ignore[assignment]
    verdict: Annotated[
        Verdict,
        Query(
            description="designer: only latents with a concept of this verdict "
            "(docs/method.md §1.11); empty: any"
        ),
    ] = "",
    min_confidence: Annotated[
        float, Query(ge=0, le=1, description="designer: the concepts' confidence floor")
    ] = studies.DEFAULT_MIN_CONFIDENCE,
) -> Context:
    """Studies: every study for admins, one's assigned studies for annotators. Admins also get
    the study designer: a filter (run, concept text, methods, verdict, confidence) whose matching
    latents the new study's form rates, ticked (docs/method.md §5)."""
    rows = study_reads.visible_studies(session, account)
    versions = {r.id: r.version for r in reads.list_runs(session)}
    is_admin = account.role == "admin"
    designer = _designer(session, run, q, methods, verdict, min_confidence) if is_admin else {}
    return {
        "studies": [study_row(s, versions.get(s.run_id)) for s in rows],
        "is_admin": is_admin,
        "runs": reads.run_ids(session) if is_admin else [],
        "defaults": {
            "size": studies.DEFAULT_SIZE,
            "min_confidence": studies.DEFAULT_MIN_CONFIDENCE,
            "methods": studies.DEFAULT_METHODS,
        },
        "methods": list(studies.METHODS),
        "verdicts": [{"code": code, "text": VERDICT_TEXT[code]} for code in VERDICTS],
        "designer": designer,
        "error": None,
    }


def _latent_list(text: str) -> list[int] | None:
    """The designer's latent list ("3, 17 42"), None when empty; a word that is not a latent
    number is refused saying which."""
    words = text.replace(",", " ").split()
    bad = [w for w in words if not w.isascii() or not w.isdigit()]
    if bad:
        raise HTTPException(
            400,
            f"latents: {bad[0]!r} is not a latent number; list numbers such as 3, 17, 42 "
            "(or leave the field empty for a random sample)",
        )
    return [int(w) for w in words] or None


@router.post(
    "/studies",
    summary="Create a study (admin, form post)",
    responses={**DONE, **responses(403, 404)},
)
async def create_study(
    request: Request,
    admin: AdminDep,
    run_id: Annotated[str, Form(min_length=1, max_length=64)],
    name: Annotated[str, Form(min_length=1, max_length=128)],
    size: Annotated[int, Form(ge=1, le=studies.MAX_SIZE)] = studies.DEFAULT_SIZE,
    min_confidence: Annotated[float, Form(ge=0, le=1)] = studies.DEFAULT_MIN_CONFIDENCE,
    methods: Annotated[str, Form(max_length=8)] = studies.DEFAULT_METHODS,
    seed: Annotated[int, Form(ge=0, le=DB_INT_MAX)] = 0,
    annotators: Annotated[
        str, Form(max_length=2000, description="usernames, comma-separated")
    ] = "",
    latents: Annotated[
        str,
        Form(
            max_length=40000,
            pattern=r"^[0-9,\s]*$",
            description="latent numbers (commas, spaces or new lines between them) rated "
            "instead of a random sample; empty: a random sample of size",
        ),
    ] = "",
    pick: Annotated[
        list[Annotated[int, Field(ge=0, le=DB_INT_MAX)]],
        Form(description="latents ticked in the designer's filter (rated with those listed)"),
    ] = [],  # noqa: B006 (FastAPI copies a default; a list, not null, keeps the form schema simple)
    from_filter: Annotated[
        str,
        Form(
            pattern="^(true)?$",
            description="'true': the form lists the filter's latents: rate the ticked ones",
        ),
    ] = "",
) -> Response:
    sessions = request.app.state.sessions
    names = [a.strip() for a in annotators.replace("\n", ",").split(",") if a.strip()]
    listed = _latent_list(latents)
    if from_filter == "true" or pick:
        listed = list(dict.fromkeys([*(listed or []), *pick]))
        if not listed:
            raise HTTPException(
                400,
                "no latent is ticked: tick the latents to rate, list them under Chosen latents, "
                "or find latents again (a study without a filter samples at random)",
            )
    try:
        study_id = await run_in_threadpool(
            lambda: studies.create_study(
                sessions, run_id, name, size=size, min_confidence=min_confidence,
                methods=methods, seed=seed, created_by=admin.id, annotators=names,
                latents=listed,
            )
        )  # fmt: skip
    except (studies.StudyError, studies.StudyNotFound) as exc:
        raise study_error(exc) from exc
    return RedirectResponse(study_url(study_id), status_code=303)
