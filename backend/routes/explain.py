"""Re-explain one latent with the configured LLM, from the browser, as a durable job
(docs/jobs.md).

POST /api/runs/{run_id}/latents/{idx}/explain queues the job and answers 202 with it (its URL in
``Location``); a ``recsae worker`` process claims it and explains the latent from its stored
construction examples, verifies the explanation on its stored verification + random examples
(paper §3.3, eq. 4), compares it with a null (docs/method.md §1.11) and appends it to the latent's
concept history (``core.jobs``). GET /api/jobs/{id} is the job (state, stage, k of n, elapsed
time, the reason it failed, and once done the saved explanation with its null and verdict);
GET /api/jobs/{id}/events streams it as server-sent events; POST /api/jobs/{id}/cancel cancels
it (its owner or an admin). GET /api/runs/{run_id}/latents/{idx}/job is the latent's newest job,
so its page shows it again after a reload or a server restart.

Before anything is queued (plain HTTP errors): 503 without an LLM, 409 for a latent with nothing
to explain or with a job already queued or running, the per-client rate limit (429) and the
per-account quota (429, counted in the database with the account's queued and running jobs:
``core.store.jobs.enqueue``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse

from backend import explain_job
from backend.auth import AccountDep
from backend.deps import DB_INT_MAX, LatentDep, RunDep, SessionDep, SettingsDep
from backend.errors import responses
from backend.explain_limits import check_rate, quota_refusal
from core.jobs import NothingToExplain, latent_cases
from core.llm.client import LLMClient, LLMNotConfigured
from core.store import jobs as store

log = logging.getLogger(__name__)
router = APIRouter(tags=["llm"])
EVENT_STREAM = "text/event-stream"
JobId = Annotated[
    int, Path(ge=1, description=f"a job's id (from the explain answer); past {DB_INT_MAX}: 404")
]


def _check_llm(settings: SettingsDep) -> None:
    """503 when no usable LLM is configured (the worker reads the same settings)."""
    try:
        LLMClient.from_settings(settings, use_cache=False)
    except LLMNotConfigured as exc:
        log.warning("explain: %s", exc)
        # Without a URL the message says what to set; a bad URL is not shown (it is internal).
        detail = str(exc)
        if settings.llm_base_url:
            detail = "The LLM is misconfigured (RECSAE_LLM_BASE_URL is not an http(s) URL); "
            detail += "the server's log has the details"
        raise HTTPException(503, detail) from None


def _job_or_404(session: SessionDep, job_id: int) -> store.Job:
    job = store.get(session, job_id) if job_id <= DB_INT_MAX else None
    if job is None:
        raise HTTPException(404, f"There is no job {job_id}")
    return job


@router.post(
    "/api/runs/{run_id}/latents/{idx}/explain",
    summary="Queue a re-explanation of a latent (LLM)",
    status_code=202,
    responses={
        **responses(401, 403, 404, 409, 429, 503),
        202: {"description": "The queued job; its URL is in Location"},
    },
)
def explain_latent(
    request: Request,
    run: RunDep,
    latent: LatentDep,
    session: SessionDep,
    settings: SettingsDep,
    account: AccountDep,
) -> Any:
    """Queue a new LLM explanation of the latent (a worker verifies it, compares it with its
    null and saves it); the answer is the job, to follow at its URL."""
    _check_llm(settings)
    try:
        latent_cases(session, run.id, latent.idx, latent.too_rare)
    except NothingToExplain as exc:
        raise HTTPException(409, str(exc)) from None
    check_rate(request, settings.llm_rate_limit_per_minute)
    session.close()  # enqueue writes through its own transaction
    sessions = request.app.state.sessions
    try:
        job_id = store.enqueue(
            sessions, run.id, latent.idx, account.id, settings.llm_explains_per_hour
        )
    except store.QuotaExceeded as exc:
        raise quota_refusal(account.username, exc) from None
    except store.JobExists as exc:
        job = explain_job.read_job(sessions, exc.job_id)
        state = job["state"] if job else "ended"
        detail = (
            f"Latent {latent.idx} already has an explanation job ({exc.job_id}, {state}); "
            "wait for it to end or cancel it"
        )
        return JSONResponse({"detail": detail, "job": job}, status_code=409)
    job = explain_job.read_job(sessions, job_id)
    assert job is not None
    return JSONResponse(job, status_code=202, headers={"Location": job["url"]})


@router.get(
    "/api/runs/{run_id}/latents/{idx}/job",
    summary="The latent's newest explanation job",
    responses=responses(404),
)
def latent_job(run: RunDep, latent: LatentDep, session: SessionDep) -> dict[str, Any]:
    """``{"job": ...}``: the latent's newest explanation job in any state, or null."""
    job = store.latest_for_latent(session, run.id, latent.idx)
    return {"job": None if job is None else explain_job.job_json(session, job)}


@router.get("/api/jobs/{job_id}", summary="An explanation job", responses=responses(404))
def job_detail(job_id: JobId, session: SessionDep) -> dict[str, Any]:
    """The job: state (queued / running / done / failed / cancelled), stage, k of n, elapsed
    time, the reason it failed, and once done the saved explanation."""
    return explain_job.job_json(session, _job_or_404(session, job_id))


@router.get(
    "/api/jobs/{job_id}/events",
    summary="An explanation job's progress (server-sent events)",
    responses={
        **responses(404),
        200: {"description": "stage events, then done, failed or cancelled",
              "content": {EVENT_STREAM: {}}},
    },
)  # fmt: skip
def job_events(job_id: JobId, request: Request, session: SessionDep) -> StreamingResponse:
    """The job's row as server-sent events (``stage`` each half second, then ``done`` with the
    saved explanation, ``failed`` with the reason or ``cancelled``)."""
    _job_or_404(session, job_id)
    session.close()
    return StreamingResponse(
        explain_job.events(request.app.state.sessions, job_id),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/api/jobs/{job_id}/cancel",
    summary="Cancel an explanation job",
    responses=responses(401, 403, 404, 409),
)
def cancel_job(
    job_id: JobId, request: Request, session: SessionDep, account: AccountDep
) -> dict[str, Any]:
    """Cancel a queued or running job: its owner or an admin (a running one stops at its
    worker's next heartbeat, nothing saved)."""
    job = _job_or_404(session, job_id)
    if job.account_id != account.id and account.role != "admin":
        raise HTTPException(
            403, f"Only the account that asked for job {job_id} or an admin may cancel it"
        )
    session.close()
    sessions = request.app.state.sessions
    if not store.cancel(sessions, job_id):
        state = explain_job.read_job(sessions, job_id)
        raise HTTPException(
            409, f"Job {job_id} has already ended ({state and state['state']}); nothing to cancel"
        )
    result = explain_job.read_job(sessions, job_id)
    assert result is not None
    return result
