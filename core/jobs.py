"""What a ``recsae worker`` does with a claimed job (docs/jobs.md): explain → verify → null → save.

The explorer's "Explain with the LLM" queues a job (``core.store.jobs.enqueue``); a worker
process claims it and runs :func:`run_explain`: it reads the latent's stored examples, the
run's other LLM labels (the null's concepts) and this latent's earlier explanations (a stored
null to reuse), then asks the LLM (``core.llm.concepts``, ``core.llm.live_null``) and saves the
concept and the job's end in one transaction. The whole job has a budget in minutes
(``RECSAE_JOB_BUDGET_MIN``), not a request's deadline: explain and verify past it fail the job
and save nothing; a null past it saves the explanation without a null (never verified,
``core.reports.is_verified``). While it works, a heartbeat writes the stage, its k of n and the
time into the job's row (``core.store.jobs.beat``) every ``RECSAE_JOB_HEARTBEAT_S``, and sooner
when the stage moves; a job cancelled meanwhile stops at the next beat, unsaved.

Failure reasons are sentences a user can act on and never show the LLM's URL (an internal
address): the details go to the worker's log. No backend, no torch: core only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.llm.client import LLMBadResponse, LLMClient, LLMError, LLMNotConfigured, LLMUnreachable
from core.llm.concepts import (
    STATUS_VERIFIED,
    ItemLookup,
    LatentCases,
    LLMConcept,
    LLMConceptConfig,
    aexplain_and_verify,
)
from core.llm.live_null import Earlier, alive_null, reusable_null
from core.llm.progress import NULL
from core.llm.prompts import PromptContext, oneshot_kind
from core.settings import Settings
from core.store import concept_reads, reads
from core.store import jobs as store
from core.store.schema import Latent, Run

log = logging.getLogger("core.jobs")
REUSE, SAVE = "reuse", "save"
# Null concepts of a live explanation: as many as the pipeline's default (worker RunConfig
# llm_null), the 19 a 5% rank test needs (core.reports.NULL_MIN_N; docs/method.md §1.11).
WEB_NULL_SIZE = 19
PROGRESS_TICK_S = 0.5  # a moved stage reaches the row within this long


class NothingToExplain(ValueError):
    """The latent has no construction examples: there is nothing to explain."""


class JobFailed(Exception):
    """The job cannot succeed; the message is the reason stored on its row."""


def worker_id() -> str:
    """This process's name in ``jobs.claimed_by``: host, pid and a thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


def latent_cases(session: Session, run_id: str, idx: int, too_rare: bool | None) -> LatentCases:
    """The latent's stored examples as prompt text (strongest activation first)."""
    examples = reads.latent_examples(session, run_id, idx)
    if not any(e.role == "construction" for e in examples):
        raise NothingToExplain(
            f"latent {idx} of run {run_id!r} has no construction examples (it never fired on "
            "the construction side), so there is nothing to explain"
        )
    wanted = {e.predicted_item for e in examples}
    for e in examples:
        wanted.update(e.history)
    items = reads.items_by_idx(session, run_id, wanted)
    lookup = ItemLookup(
        titles={i: it.title for i, it in items.items()},
        genres={i: list(it.genres or []) for i, it in items.items()},
    )

    def raw(role: str) -> list[tuple[list[int], int, int]]:
        return [(e.history, e.predicted_item, e.level) for e in examples if e.role == role]

    try:
        return LatentCases.from_ids(
            idx, lookup, raw("construction"), raw("verification"), raw("random"),
            too_rare=too_rare,
        )  # fmt: skip
    except KeyError as exc:
        raise JobFailed(f"run {run_id!r} is inconsistent: {exc.args[0]}") from exc


@dataclass
class ExplainInputs:
    """What one explanation needs, all read before the LLM is asked."""

    cases: LatentCases
    ctx: PromptContext
    config: LLMConceptConfig
    earlier: list[Earlier]  # this latent's LLM explanations on the same version, newest first
    pool: list[LLMConcept]  # the run's other latents' labels (null concepts)
    row: dict[str, Any]  # run_id, account_id, run_version: the saved row's own fields


def explain_inputs(session: Session, job: store.Claimed) -> ExplainInputs:
    """Read everything the job needs (JobFailed when its run or latent is gone)."""
    run = session.get(Run, job.run_id)
    latent = session.get(Latent, (job.run_id, job.latent))
    if run is None or latent is None:
        raise JobFailed(f"run {job.run_id!r} has no latent {job.latent} any more")
    cases = latent_cases(session, run.id, latent.idx, latent.too_rare)
    earlier = [
        Earlier(c.id, c.model, dict(c.details or {}))
        for c in reads.latent_concepts(session, run.id, latent.idx)
        if c.method == "llm" and c.run_version == job.run_version
    ]
    pool = [
        LLMConcept(other, text, None, STATUS_VERIFIED, "")
        for other, text in concept_reads.other_llm_labels(
            session, run.id, job.run_version, latent.idx
        )
    ]
    return ExplainInputs(
        cases=cases,
        ctx=PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset)),
        # N as the run recorded it: its stored examples are all the cases there are.
        config=LLMConceptConfig(n=max(len(cases.construction), len(cases.verification), 1)),
        earlier=earlier,
        pool=pool,
        row={"run_id": run.id, "account_id": job.account_id, "run_version": job.run_version},
    )


class Progress:
    """The stage a job is at, as ``core.llm.progress`` reports it; the heartbeat writes it."""

    def __init__(self) -> None:
        self.stage, self.done, self.total = "claimed", 0, 0
        self.moved = True

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total
        self.moved = True


def _llm_reason(exc: LLMError) -> str:
    if isinstance(exc, LLMUnreachable):
        return (
            "The LLM server did not answer; nothing was saved. Is it running? The worker's log "
            "has the details."
        )
    if isinstance(exc, LLMBadResponse):
        return (
            "The LLM server answered unusably; nothing was saved. The worker's log has the "
            "details (check RECSAE_LLM_MODEL and RECSAE_LLM_API_KEY)."
        )
    return "The LLM failed; nothing was saved. The worker's log has the details."


async def run_explain(
    inputs: ExplainInputs,
    client: LLMClient,
    progress: Progress,
    budget_s: float,
    seed: int,
) -> tuple[LLMConcept, float]:
    """Explain, verify and null within ``budget_s``: the concept and the seconds it took.

    Raises JobFailed (explain or verify past the budget, the LLM unreachable or unusable)."""
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + budget_s
    latent_id = inputs.cases.latent_id
    minutes = f"{budget_s / 60:g} min" if budget_s >= 60 else f"{budget_s:g} s"
    try:
        async with asyncio.timeout_at(deadline):
            concept = await aexplain_and_verify(
                inputs.cases, client, inputs.ctx, inputs.config, progress
            )
    except TimeoutError:
        log.warning("explain latent %d: not done within %s", latent_id, minutes)
        raise JobFailed(
            f"The LLM did not explain and verify within the job's budget of {minutes} "
            "(RECSAE_JOB_BUDGET_MIN); nothing was saved. Try again later."
        ) from None
    except LLMError as exc:
        log.warning("explain latent %d: %s", latent_id, exc)
        raise JobFailed(_llm_reason(exc)) from None
    if concept.confidence is not None:
        await _null(inputs, client, concept, progress, deadline, minutes, seed)
    return concept, time.perf_counter() - started


async def _null(
    inputs: ExplainInputs,
    client: LLMClient,
    concept: LLMConcept,
    progress: Progress,
    deadline: float,
    minutes: str,
    seed: int,
) -> None:
    """``details["null"]`` (reused, else live by ``deadline``), or ``details["null_missing"]``
    saying why there is none (core.llm.live_null)."""
    reused = reusable_null(concept, inputs.earlier)
    if reused is not None:
        progress(REUSE, 0, 0)
        concept.details["null"] = reused
        return
    try:
        async with asyncio.timeout_at(deadline):
            null = await alive_null(
                concept, inputs.cases, inputs.pool, client, inputs.ctx, inputs.config,
                size=WEB_NULL_SIZE, seed=seed, progress=progress,
            )  # fmt: skip
    except TimeoutError:
        done, total = (progress.done, progress.total) if progress.stage == NULL else (0, 0)
        concept.details["null_missing"] = (
            f"the null ({done} of {total} other labels scored) did not finish within the job's "
            f"budget of {minutes} (RECSAE_JOB_BUDGET_MIN)"
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


def concept_row(inputs: ExplainInputs, concept: LLMConcept, elapsed_s: float) -> dict[str, Any]:
    """The ``concepts`` row of a web explanation (the same as the explorer saved before jobs).

    The version whose examples were explained: if the run was republished meanwhile, the concept
    is kept as that version's history (docs/architecture.md, run versions)."""
    details = {**concept.details, "elapsed_s": round(elapsed_s, 3), "source": "web"}
    row = {**concept.to_row(), **inputs.row, "source": "web", "created_at": datetime.now(UTC)}
    row["details"] = details
    return row


class Worker:
    """Claims jobs and does them, one at a time (run several workers for more at once)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        name: str | None = None,
        client_factory: Callable[[], LLMClient] | None = None,
    ) -> None:
        for knob, value in (
            ("RECSAE_JOB_BUDGET_MIN", settings.job_budget_min),
            ("RECSAE_JOB_HEARTBEAT_S", settings.job_heartbeat_s),
            ("RECSAE_JOB_STALE_S", settings.job_stale_s),
            ("RECSAE_JOB_POLL_S", settings.job_poll_s),
            ("RECSAE_JOB_MAX_ATTEMPTS", settings.job_max_attempts),
        ):
            if not value > 0:
                raise ValueError(f"{knob} must be a positive number, like 20; it is {value}")
        if settings.job_stale_s <= 2 * settings.job_heartbeat_s:
            raise ValueError(
                f"RECSAE_JOB_STALE_S ({settings.job_stale_s:g}) must be more than twice "
                f"RECSAE_JOB_HEARTBEAT_S ({settings.job_heartbeat_s:g}): a live worker's job "
                "would be taken from it"
            )
        self.settings = settings
        self.sessions = sessions
        self.name = name or worker_id()
        self.current: int | None = None  # the job being done
        self._client_factory = client_factory or (
            lambda: LLMClient.from_settings(settings, use_cache=False)
        )

    def run_one(self) -> int | None:
        """Queue the stale jobs again, then claim and do the oldest queued one: its id, or None
        when there was none."""
        store.requeue_stale(
            self.sessions, self.settings.job_stale_s, self.settings.job_max_attempts
        )
        job = store.claim(self.sessions, self.name)
        if job is None:
            return None
        log.info("job %d: explain latent %d of %s (attempt %d)", job.id, job.latent,
                 job.run_id, job.attempts)  # fmt: skip
        self.current = job.id
        try:
            asyncio.run(self._do(job))
        except JobFailed as exc:
            store.fail(self.sessions, job.id, self.name, str(exc))
            log.info("job %d failed: %s", job.id, exc)
        except Exception:
            log.exception("job %d failed", job.id)
            store.fail(self.sessions, job.id, self.name, "Internal error; nothing was saved")
        # (a KeyboardInterrupt leaves it set: release() gives the job back)
        self.current = None
        return job.id

    def release(self) -> None:
        """Give the job being done back to the queue (the process is being stopped)."""
        if self.current is not None:
            store.release(self.sessions, self.current, self.name)
            log.info("job %d given back to the queue", self.current)
            self.current = None

    def run(self, stop: threading.Event | None = None, *, until_idle: bool = False) -> int:
        """Do jobs until ``stop`` is set (or, with ``until_idle``, none is queued); returns how
        many it did."""
        stop = stop or threading.Event()
        count = 0
        while not stop.is_set():
            if self.run_one() is not None:
                count += 1
            elif until_idle:
                break
            else:
                stop.wait(self.settings.job_poll_s)
        return count

    async def _do(self, job: store.Claimed) -> None:
        with self.sessions() as session:
            try:
                inputs = explain_inputs(session, job)
            except NothingToExplain as exc:
                raise JobFailed(str(exc)) from None
        try:
            client = self._client_factory()
        except LLMNotConfigured as exc:
            log.warning("job %d: %s", job.id, exc)
            raise JobFailed(
                "The worker has no usable LLM (RECSAE_LLM_BASE_URL); nothing was saved. "
                "The worker's log has the details."
            ) from None
        progress = Progress()
        budget_s = self.settings.job_budget_min * 60
        work = asyncio.ensure_future(
            run_explain(inputs, client, progress, budget_s, self.settings.llm_seed)
        )
        beating = asyncio.ensure_future(self._heartbeat(job.id, progress, work))
        try:
            concept, elapsed_s = await work
        except asyncio.CancelledError:
            log.info("job %d was cancelled or taken over: nothing saved", job.id)
            return
        finally:
            beating.cancel()
            await client.aclose()
        row = concept_row(inputs, concept, elapsed_s)
        try:
            saved = await asyncio.to_thread(store.finish, self.sessions, job.id, self.name, row)
        except LookupError as exc:  # the run was republished without this latent meanwhile
            raise JobFailed(
                f"{exc}: the run was republished while the LLM worked; nothing was saved"
            ) from exc
        if saved is None:
            log.info("job %d was cancelled or taken over before it saved: nothing saved", job.id)
        else:
            log.info("job %d done: concept %d in %.1f s", job.id, saved, elapsed_s)

    async def _heartbeat(self, job_id: int, progress: Progress, work: asyncio.Future[Any]) -> None:
        """Write the stage when it moves (within PROGRESS_TICK_S) and a heartbeat every
        RECSAE_JOB_HEARTBEAT_S; cancel ``work`` once the job is no longer ours."""
        tick = min(PROGRESS_TICK_S, self.settings.job_heartbeat_s)
        last = 0.0
        while not work.done():
            now = time.monotonic()
            if progress.moved or now - last >= self.settings.job_heartbeat_s:
                progress.moved = False
                mine = await asyncio.to_thread(
                    store.beat, self.sessions, job_id, self.name,
                    progress.stage, progress.done, progress.total,
                )  # fmt: skip
                last = now
                if not mine:
                    work.cancel()
                    return
            await asyncio.sleep(tick)
