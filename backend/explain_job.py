"""One live re-explanation as a task whose progress a page can watch.

:func:`start` runs explain → verify → null → save as an asyncio task holding one of the
process's explanation slots (:mod:`backend.explain_limits`); the route either awaits it (JSON)
or streams :meth:`ExplainJob.events` (server-sent events: ``stage`` events with the stage, its
counts and the elapsed time, then one ``done`` with the saved explanation or one ``error`` with
the status and message an HTTP answer would have had). A client that goes away cancels it.

One deadline (``RECSAE_LLM_EXPLAIN_DEADLINE_S``) bounds the whole task. Explain and verify past
it: 504 and nothing saved. The null (docs/method.md §1.11, ``core.llm.live_null``) past it: the
explanation is saved without a null, which ``core.reports.is_verified`` never calls verified.
Errors never show the LLM's URL (an internal address): the detail goes to the server's log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.explain_limits import Held
from backend.nulls import trust
from core.llm.client import LLMBadResponse, LLMClient, LLMError, LLMUnreachable
from core.llm.concepts import LatentCases, LLMConcept, LLMConceptConfig, aexplain_and_verify
from core.llm.live_null import Earlier, alive_null, reusable_null
from core.llm.progress import EXPLAIN, NULL, RELABEL, VERIFY
from core.llm.prompts import PromptContext
from core.store.writes import add_concept

log = logging.getLogger("backend.routes.explain")  # the route's log: operators look there
QUEUED, REUSE, SAVE = "queued", "reuse", "save"
HEARTBEAT_S = 1.0  # a stage event at least this often, so the page's clock never looks stuck

STAGE_TEXT: dict[str, Callable[[int, int], str]] = {
    QUEUED: lambda d, t: "starting",
    EXPLAIN: lambda d, t: f"asking for a description of the latent from its {t} top cases",
    RELABEL: lambda d, t: (
        "the label named nothing (a generic phrase, a repeat or a title): asking once more"
    ),
    VERIFY: lambda d, t: f"verifying on {t} cases ({d}/{t} answered)",
    NULL: lambda d, t: f"null {d}/{t}: other latents' labels scored on the same cases",
    REUSE: lambda d, t: "comparing with the null stored with an earlier explanation",
    SAVE: lambda d, t: "saving",
}


@dataclass
class ExplainInputs:
    """What one explanation needs, all read before it starts (the request's session is gone
    by the time a streamed task ends)."""

    client: LLMClient
    cases: LatentCases
    ctx: PromptContext
    config: LLMConceptConfig
    deadline_s: float
    earlier: list[Earlier]  # this latent's LLM explanations on the same version, newest first
    pool: list[LLMConcept]  # the run's other latents' labels (null concepts)
    null_size: int
    seed: int
    sessions: sessionmaker[Session]
    row: dict[str, Any]  # run_id, account_id, run_version: the saved row's own fields


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


class ExplainJob:
    """One explanation's task and the steps it has reported (what the stream sends)."""

    def __init__(self, latent_id: int, started: float) -> None:
        self.latent_id = latent_id
        self.started = started  # time.perf_counter() when the request came
        self.stage, self.done, self.total = QUEUED, 0, 0
        self.reports = [self.snapshot()]  # every step, in order: a stream misses none
        self.changed = asyncio.Event()
        self.task: asyncio.Task[dict[str, Any]] | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        """A ``core.llm.progress.Progress``: the step the explanation is at."""
        self.stage, self.done, self.total = stage, done, total
        self.reports.append(self.snapshot())
        self.changed.set()

    def snapshot(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "text": STAGE_TEXT[self.stage](self.done, self.total),
            "elapsed_s": round(time.perf_counter() - self.started, 1),
        }

    async def events(self) -> AsyncIterator[str]:
        """Every step as it comes (the current one again each second), then ``done`` or
        ``error``."""
        task = self.task
        assert task is not None
        sent = 0
        try:
            while True:
                self.changed.clear()
                done = task.done()  # before sending: a step reported meanwhile is sent next
                new = self.reports[sent:]
                sent += len(new)  # counted now: the task may report more while we yield
                if not new:
                    yield sse("stage", self.snapshot())  # nothing new: the clock goes on
                for report in new:
                    yield sse("stage", report)
                if done and sent == len(self.reports):
                    break
                waiter = asyncio.ensure_future(self.changed.wait())
                await asyncio.wait(
                    {task, waiter}, timeout=HEARTBEAT_S, return_when="FIRST_COMPLETED"
                )
                waiter.cancel()
            try:
                yield sse("done", task.result())
            except HTTPException as exc:
                yield sse("error", {"status": exc.status_code, "detail": exc.detail})
            except Exception:
                log.exception("explain latent %d failed", self.latent_id)
                yield sse("error", {"status": 500, "detail": "Internal error; nothing was saved"})
        finally:
            if not task.done():  # the client went away: stop asking the LLM
                task.cancel()


def start(inputs: ExplainInputs, held: Held, started: float) -> ExplainJob:
    """Start the explanation as a task; ``held`` (quota and slot) is released when it ends."""
    job = ExplainJob(inputs.cases.latent_id, started)
    job.task = asyncio.create_task(_run(inputs, job))
    job.task.add_done_callback(held.release)
    return job


async def _run(inputs: ExplainInputs, job: ExplainJob) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + inputs.deadline_s
    try:
        concept = await _explain(inputs, job, deadline)
        if concept.confidence is not None:
            await _null(inputs, job, concept, deadline)
    finally:
        await inputs.client.aclose()
    job.report(SAVE, 0, 0)
    return await _save(inputs, concept, time.perf_counter() - job.started)


async def _explain(inputs: ExplainInputs, job: ExplainJob, deadline: float) -> LLMConcept:
    """Explain and verify by ``deadline``; LLM failures as 502/504 that name no URL."""
    latent_id = inputs.cases.latent_id
    try:
        async with asyncio.timeout_at(deadline):
            return await aexplain_and_verify(
                inputs.cases, inputs.client, inputs.ctx, inputs.config, job.report
            )
    except TimeoutError:
        log.warning("explain latent %d: no answer within %g s", latent_id, inputs.deadline_s)
        raise HTTPException(
            504,
            f"The LLM server did not answer within {inputs.deadline_s:g} s "
            "(RECSAE_LLM_EXPLAIN_DEADLINE_S); nothing was saved. Try again later.",
        ) from None
    except LLMUnreachable as exc:
        log.warning("explain latent %d: %s", latent_id, exc)
        raise HTTPException(
            502,
            "The LLM server did not answer; nothing was saved. Is it running? The server's log "
            "has the details.",
        ) from None
    except LLMBadResponse as exc:
        log.warning("explain latent %d: %s", latent_id, exc)
        raise HTTPException(
            502,
            "The LLM server answered unusably; nothing was saved. The server's log has the "
            "details (check RECSAE_LLM_MODEL and RECSAE_LLM_API_KEY).",
        ) from None


async def _null(
    inputs: ExplainInputs, job: ExplainJob, concept: LLMConcept, deadline: float
) -> None:
    """``details["null"]`` (reused, else live by ``deadline``), or ``details["null_missing"]``
    saying why there is none (core.llm.live_null)."""
    reused = reusable_null(concept, inputs.earlier)
    if reused is not None:
        job.report(REUSE, 0, 0)
        concept.details["null"] = reused
        return
    try:
        async with asyncio.timeout_at(deadline):
            null = await alive_null(
                concept, inputs.cases, inputs.pool, inputs.client, inputs.ctx, inputs.config,
                size=inputs.null_size, seed=inputs.seed, progress=job.report,
            )  # fmt: skip
    except TimeoutError:
        concept.details["null_missing"] = (
            f"the null ({job.done} of {job.total} other labels scored) did not finish within "
            f"the {inputs.deadline_s:g} s deadline (RECSAE_LLM_EXPLAIN_DEADLINE_S)"
        )
        return
    except LLMError as exc:
        log.warning("explain latent %d, null: %s", concept.latent_id, exc)
        concept.details["null_missing"] = "the LLM failed while scoring the null"
        return
    if null is None:
        concept.details["null_missing"] = "no other latent of this run has an LLM label"
    else:
        concept.details["null"] = null


async def _save(inputs: ExplainInputs, concept: LLMConcept, elapsed_s: float) -> dict[str, Any]:
    """Append the explanation to the latent's history; the answer the page and API get."""
    created_at = datetime.now(UTC)
    details = {**concept.details, "elapsed_s": round(elapsed_s, 3), "source": "web"}
    # The version whose examples were explained: if the run was republished meanwhile, the
    # concept is kept as that version's history (docs/architecture.md, run versions).
    row = {**concept.to_row(), **inputs.row, "source": "web", "created_at": created_at}
    row["details"] = details
    try:
        concept_id = await run_in_threadpool(add_concept, inputs.sessions, row)
    except LookupError as exc:  # the run was republished without this latent meanwhile
        raise HTTPException(
            409, f"{exc}: the run was republished while the LLM worked; nothing was saved"
        ) from exc
    return {
        "id": concept_id,
        "run": inputs.row["run_id"],
        "latent": concept.latent_id,
        "method": "llm",
        "text": concept.text,
        "confidence": concept.confidence,
        "status": concept.status,
        "model": concept.model,
        "created_at": created_at.isoformat(),
        "elapsed_s": round(elapsed_s, 3),
        **trust(concept.confidence, details, concept.status),
        "details": details,
    }
