"""Re-explain one latent with the configured LLM, from the browser (issue 4 §3).

POST /api/runs/{run_id}/latents/{idx}/explain: explain the latent from its stored construction
examples, verify the explanation on its stored verification + random examples (paper §3.3,
eq. 4), append it to the latent's concept history, and return it with its score, model and time.

The LLM under control (issue 8 §3): every call costs about 1 + 2N LLM requests, so
- a per-client-IP token bucket (``RECSAE_LLM_RATE_LIMIT_PER_MINUTE``, 0 disables it) keeps one
  browser from monopolising the LLM;
- a per-account quota (``RECSAE_LLM_EXPLAINS_PER_HOUR``) is counted from the concepts table (the
  account's web rows of the last hour), so it holds across worker processes and restarts;
- at most ``RECSAE_LLM_EXPLAIN_CONCURRENCY`` explanations run at once in a server process; a
  request that finds no free slot within ``RECSAE_LLM_EXPLAIN_QUEUE_WAIT_S`` gets 503 with
  Retry-After instead of queueing for minutes;
- one explanation (explain + verify, every retry) has ``RECSAE_LLM_EXPLAIN_DEADLINE_S``; past it
  the answer is 504 and nothing is saved.
Errors never show the LLM's URL (an internal address): the detail goes to the server's log.
The answer bypasses the LLM cache: the user asked for a *new* explanation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from backend.auth import AccountDep
from backend.deps import LatentDep, RunDep, SessionDep, SettingsDep
from backend.errors import responses
from core.llm.client import LLMBadResponse, LLMClient, LLMNotConfigured, LLMUnreachable
from core.llm.concepts import (
    ItemLookup,
    LatentCases,
    LLMConcept,
    LLMConceptConfig,
    aexplain_and_verify,
)
from core.llm.prompts import PromptContext, oneshot_kind
from core.settings import Settings
from core.store import reads
from core.store.schema import Account, Concept
from core.store.writes import add_concept

log = logging.getLogger(__name__)
router = APIRouter(tags=["llm"])
QUOTA_WINDOW = timedelta(hours=1)


class TokenBucket:
    """Per-key token buckets: ``capacity`` requests at once, refilled at ``capacity`` per minute."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate_per_s = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s


def _limiter(request: Request, per_minute: int) -> TokenBucket:
    """The app's bucket (one per app, so tests and workers never share state)."""
    limiter: TokenBucket | None = getattr(request.app.state, "explain_limiter", None)
    if limiter is None or limiter.capacity != per_minute:
        limiter = TokenBucket(per_minute)
        request.app.state.explain_limiter = limiter
    return limiter


def _check_rate(request: Request, per_minute: int) -> None:
    if per_minute <= 0:
        return
    client_ip = request.client.host if request.client else "unknown"
    wait_s = _limiter(request, per_minute).take(client_ip)
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        raise HTTPException(
            429,
            f"Too many explanation requests: at most {per_minute} per minute per client; "
            f"try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def _check_quota(request: Request, session: SessionDep, account: Account, per_hour: int) -> None:
    """429 once ``account`` has ``per_hour`` explanations from the last hour (saved or running)."""
    if per_hour <= 0:
        return
    since = datetime.now(UTC) - QUOTA_WINDOW
    count, oldest = session.execute(
        select(func.count(), func.min(Concept.created_at)).where(
            Concept.account_id == account.id,
            Concept.source == "web",
            Concept.created_at >= since,
        )
    ).one()
    running = _running(request).get(account.id, 0)
    if count + running < per_hour:
        return
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        free_in = (oldest + QUOTA_WINDOW - datetime.now(UTC)).total_seconds()
    else:  # the quota is all running explanations: one ends within the deadline
        free_in = request.app.state.settings.llm_explain_deadline_s
    retry_after = max(1, math.ceil(free_in))
    raise HTTPException(
        429,
        f"{account.username!r} has asked for {per_hour} explanations within the hour, the most "
        f"an account may (RECSAE_LLM_EXPLAINS_PER_HOUR); try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def _running(request: Request) -> dict[int, int]:
    """Explanations running in this process, per account id (counted against the quota too)."""
    running: dict[int, int] | None = getattr(request.app.state, "explain_running", None)
    if running is None:
        running = request.app.state.explain_running = {}
    return running


def _slots(request: Request, capacity: int) -> asyncio.Semaphore:
    """The app's explanation slots (one semaphore per app and event loop: one per process)."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, int, asyncio.Semaphore] | None = getattr(
        request.app.state, "explain_slots", None
    )
    if held is None or held[0] is not loop or held[1] != capacity:
        held = (loop, capacity, asyncio.Semaphore(capacity))
        request.app.state.explain_slots = held
    return held[2]


@asynccontextmanager
async def _explaining(
    request: Request, session: SessionDep, account: Account, settings: Settings
) -> AsyncIterator[None]:
    """Within the account's quota, hold one of the process's explanation slots (429 past the
    quota, 503 when no slot frees up in time). The account's explanation counts as running from
    the quota check on, so requests sent at once cannot all slip under it."""
    _check_quota(request, session, account, settings.llm_explains_per_hour)
    running = _running(request)
    running[account.id] = running.get(account.id, 0) + 1
    slots = _slots(request, max(1, settings.llm_explain_concurrency))
    try:
        try:
            async with asyncio.timeout(settings.llm_explain_queue_wait_s):
                await slots.acquire()
        except TimeoutError:
            retry_after = max(1, math.ceil(settings.llm_explain_deadline_s))
            raise HTTPException(
                503,
                f"The LLM is busy with {settings.llm_explain_concurrency} other explanation(s) "
                f"(RECSAE_LLM_EXPLAIN_CONCURRENCY); try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            ) from None
        try:
            yield
        finally:
            slots.release()
    finally:
        running[account.id] -= 1
        if not running[account.id]:
            del running[account.id]


async def _explain(
    client: LLMClient,
    cases: LatentCases,
    ctx: PromptContext,
    config: LLMConceptConfig,
    deadline_s: float,
) -> LLMConcept:
    """Explain and verify within ``deadline_s``; LLM failures as 502/504 that name no URL."""
    try:
        async with asyncio.timeout(deadline_s):
            return await aexplain_and_verify(cases, client, ctx, config)
    except TimeoutError:
        log.warning("explain latent %d: no answer within %g s", cases.latent_id, deadline_s)
        raise HTTPException(
            504,
            f"The LLM server did not answer within {deadline_s:g} s "
            "(RECSAE_LLM_EXPLAIN_DEADLINE_S); nothing was saved. Try again later.",
        ) from None
    except LLMUnreachable as exc:
        log.warning("explain latent %d: %s", cases.latent_id, exc)
        raise HTTPException(
            502,
            "The LLM server did not answer; nothing was saved. Is it running? The server's log "
            "has the details.",
        ) from None
    except LLMBadResponse as exc:
        log.warning("explain latent %d: %s", cases.latent_id, exc)
        raise HTTPException(
            502,
            "The LLM server answered unusably; nothing was saved. The server's log has the "
            "details (check RECSAE_LLM_MODEL and RECSAE_LLM_API_KEY).",
        ) from None
    finally:
        await client.aclose()


def _latent_cases(session: SessionDep, run_id: str, idx: int, too_rare: bool) -> LatentCases:
    """The latent's stored examples as prompt text (strongest activation first)."""
    examples = reads.latent_examples(session, run_id, idx)
    if not any(e.role == "construction" for e in examples):
        raise HTTPException(
            409,
            f"latent {idx} of run {run_id!r} has no construction examples (it never fired on "
            "the construction side), so there is nothing to explain",
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
            idx,
            lookup,
            raw("construction"),
            raw("verification"),
            raw("random"),
            too_rare=too_rare,
        )
    except KeyError as exc:
        raise HTTPException(500, f"run {run_id!r} is inconsistent: {exc.args[0]}") from exc


@router.post(
    "/api/runs/{run_id}/latents/{idx}/explain",
    summary="Re-explain a latent (LLM)",
    responses=responses(401, 403, 404, 409, 429, 502, 503, 504),
)
async def explain_latent(
    request: Request,
    run: RunDep,
    latent: LatentDep,
    session: SessionDep,
    settings: SettingsDep,
    account: AccountDep,
) -> dict[str, Any]:
    """A new LLM explanation of the latent, verified on its stored examples and saved."""
    try:
        client = LLMClient.from_settings(settings, use_cache=False)
    except LLMNotConfigured as exc:
        log.warning("explain: %s", exc)
        # Without a URL the message says what to set; a bad URL is not shown (it is internal).
        detail = str(exc)
        if settings.llm_base_url:
            detail = "The LLM is misconfigured (RECSAE_LLM_BASE_URL is not an http(s) URL); "
            detail += "the server's log has the details"
        raise HTTPException(503, detail) from None
    _check_rate(request, settings.llm_rate_limit_per_minute)
    cases = _latent_cases(session, run.id, latent.idx, latent.too_rare)
    ctx = PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset))
    # N as the run recorded it: its stored examples are all the cases there are.
    config = LLMConceptConfig(n=max(len(cases.construction), len(cases.verification), 1))
    started = time.perf_counter()
    async with _explaining(request, session, account, settings):
        concept = await _explain(client, cases, ctx, config, settings.llm_explain_deadline_s)
    elapsed_s = time.perf_counter() - started
    created_at = datetime.now(UTC)
    row = {
        **concept.to_row(),
        "run_id": run.id,
        "account_id": account.id,
        "source": "web",
        # The version whose examples were explained: if the run was republished meanwhile, the
        # concept is kept as that version's history (docs/architecture.md, run versions).
        "run_version": run.version,
        "created_at": created_at,
        "details": {**concept.details, "elapsed_s": round(elapsed_s, 3), "source": "web"},
    }
    try:
        concept_id = await run_in_threadpool(add_concept, request.app.state.sessions, row)
    except LookupError as exc:  # the run was republished without this latent meanwhile
        raise HTTPException(
            409, f"{exc}: the run was republished while the LLM worked; nothing was saved"
        ) from exc
    return {
        "id": concept_id,
        "run": run.id,
        "latent": latent.idx,
        "method": "llm",
        "text": concept.text,
        "confidence": concept.confidence,
        "status": concept.status,
        "model": concept.model,
        "created_at": created_at.isoformat(),
        "elapsed_s": round(elapsed_s, 3),
        "details": row["details"],
    }
