"""An explanation job as the explorer shows it (docs/jobs.md): its JSON, its words, its stream.

The backend never asks the LLM: "Explain with the LLM" queues a job (``core.store.jobs``) that a
``recsae worker`` process does (``core.jobs``). Here the job's row becomes what the page and the
API show: :func:`job_json` (state, stage with its words, k of n, elapsed time, the reason a job
failed, and once done the saved explanation with its null and verdict, the same answer the
explorer gave when it ran the LLM itself) and :func:`events`, the server-sent events stream that
reads the row every :data:`POLL_S`: ``stage`` events, then one ``done`` (the saved
explanation), ``failed`` (the reason) or ``cancelled``. A stream ends after :data:`STREAM_MAX_S`
with a ``retry`` line, so it never holds a server slot for the minutes a job can take: the
browser's EventSource connects again (after a server restart too) and the row says where the
job is.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.nulls import trust
from core.jobs import REUSE, SAVE
from core.llm.progress import EXPLAIN, NULL, RELABEL, VERIFY
from core.store import jobs as store
from core.store.jobs import CANCELLED, DONE, FAILED, QUEUED, Job
from core.store.schema import Concept

POLL_S = 0.5  # how often the stream reads the job's row
STREAM_MAX_S = 25.0  # one stream's life; the browser reconnects (and a restart loses nothing)
RETRY_MS = 1000

STAGE_TEXT: dict[str, Callable[[int, int], str]] = {
    QUEUED: lambda d, t: "queued: waiting for a worker (recsae worker)",
    "claimed": lambda d, t: "starting",
    EXPLAIN: lambda d, t: f"asking for a description of the latent from its {t} top cases",
    RELABEL: lambda d, t: (
        "the label named nothing (a generic phrase, a repeat or a title): asking once more"
    ),
    VERIFY: lambda d, t: f"verifying on {t} cases ({d}/{t} answered)",
    NULL: lambda d, t: f"null {d}/{t}: other latents' labels scored on the same cases",
    REUSE: lambda d, t: "comparing with the null stored with an earlier explanation",
    SAVE: lambda d, t: "saving",
    DONE: lambda d, t: "done",
}


def job_url(job_id: int) -> str:
    return f"/api/jobs/{job_id}"


def concept_json(concept: Concept) -> dict[str, Any]:
    """A saved web explanation with its null and verdict (the ``done`` answer)."""
    details = dict(concept.details or {})
    created = concept.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return {
        "id": concept.id,
        "run": concept.run_id,
        "latent": concept.latent_idx,
        "method": concept.method,
        "text": concept.text,
        "confidence": concept.confidence,
        "status": concept.status,
        "model": concept.model,
        "created_at": created.isoformat(),
        "elapsed_s": details.get("elapsed_s"),
        **trust(concept.confidence, details, concept.status),
        "details": details,
    }


def _elapsed_s(job: Job) -> float:
    """Waiting time while queued; working time once claimed (until it ended)."""
    times = store.times(job)
    start = times["claimed_at"] or times["created_at"]
    end = times["finished_at"] or datetime.now(UTC)
    assert start is not None
    return round(max(0.0, (end - start).total_seconds()), 1)


def stage_text(job: Job) -> str:
    if job.state == FAILED:
        return f"failed: {job.error}"
    if job.state == CANCELLED:
        return "cancelled"
    words = STAGE_TEXT.get(job.stage)
    return words(job.done, job.total) if words else job.stage


def job_json(session: Session, job: Job) -> dict[str, Any]:
    """The job as the API and the page show it."""
    times = store.times(job)
    result = None
    if job.state == DONE and job.concept_id is not None:
        concept = session.get(Concept, job.concept_id)
        result = concept_json(concept) if concept is not None else None
    url = job_url(job.id)
    return {
        "id": job.id,
        "kind": job.kind,
        "run": job.run_id,
        "latent": job.latent,
        "run_version": job.run_version,
        "state": job.state,
        "stage": job.stage,
        "done": job.done,
        "total": job.total,
        "text": stage_text(job),
        "elapsed_s": _elapsed_s(job),
        "attempts": job.attempts,
        "error": job.error if job.state == FAILED else None,
        "note": job.error if job.state != FAILED else None,  # e.g. re-queued after a dead worker
        "account_id": job.account_id,
        **{name: value.isoformat() if value else None for name, value in times.items()},
        "concept_id": job.concept_id,
        "result": result,
        "url": url,
        "events_url": f"{url}/events",
        "cancel_url": f"{url}/cancel",
    }


def read_job(sessions: sessionmaker[Session], job_id: int) -> dict[str, Any] | None:
    with sessions() as session:
        job = store.get(session, job_id)
        return None if job is None else job_json(session, job)


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def events(sessions: sessionmaker[Session], job_id: int) -> AsyncIterator[str]:
    """The job's stages as they are written, then its end (see the module doc)."""
    yield f"retry: {RETRY_MS}\n\n"
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_MAX_S
    while True:
        job = await run_in_threadpool(read_job, sessions, job_id)
        if job is None:
            yield sse("failed", {"detail": f"there is no job {job_id}"})
            return
        if job["state"] == DONE:
            yield sse("done", job["result"] or {})
            return
        if job["state"] == FAILED:
            yield sse("failed", job)
            return
        if job["state"] == CANCELLED:
            yield sse("cancelled", job)
            return
        yield sse("stage", job)  # every poll: the elapsed time moves on with the stage
        if loop.time() >= ends:
            return  # the browser connects again (retry above)
        await asyncio.sleep(POLL_S)
