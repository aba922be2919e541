"""The LLM under control: the limits every re-explanation passes
(backend/routes/explain.py).

Every explanation costs about 1 + 2N LLM requests (and up to 2N more per null concept), so
- a per-client-IP token bucket (``RECSAE_LLM_RATE_LIMIT_PER_MINUTE``, 0 disables it) keeps one
  browser from monopolising the LLM;
- a per-account quota (``RECSAE_LLM_EXPLAINS_PER_HOUR``) is counted from the concepts table (the
  account's web rows of the last hour) plus the account's explanations running in this process,
  so it holds across worker processes and restarts, and for requests sent at once;
- at most ``RECSAE_LLM_EXPLAIN_CONCURRENCY`` explanations run at once in a server process; a
  request that finds no free slot within ``RECSAE_LLM_EXPLAIN_QUEUE_WAIT_S`` gets 503 with
  Retry-After instead of queueing for minutes.
:func:`hold` takes the quota and a slot and returns a :class:`Held`; its ``release`` is plain
(not async), so it can run as the explanation task's done-callback, whatever ends the task.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.settings import Settings
from core.store.schema import Account, Concept

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


def check_rate(request: Request, per_minute: int) -> None:
    """429 with Retry-After once this client IP asked for ``per_minute`` within the minute."""
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


def _check_quota(request: Request, session: Session, account: Account, per_hour: int) -> None:
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


class Held:
    """One explanation's place in its account's quota and, once taken, a slot."""

    def __init__(self, running: dict[int, int], account_id: int) -> None:
        self._running = running
        self._account_id = account_id
        self.slot: asyncio.Semaphore | None = None
        self._released = False
        running[account_id] = running.get(account_id, 0) + 1

    def release(self, *_: object) -> None:
        """Give back the slot and the running count (once; extra calls do nothing)."""
        if self._released:
            return
        self._released = True
        if self.slot is not None:
            self.slot.release()
        self._running[self._account_id] -= 1
        if not self._running[self._account_id]:
            del self._running[self._account_id]


async def hold(request: Request, session: Session, account: Account, settings: Settings) -> Held:
    """Within the account's quota, take one of the process's explanation slots (429 past the
    quota, 503 when no slot frees up in time). The account's explanation counts as running from
    the quota check on, so requests sent at once cannot all slip under it."""
    _check_quota(request, session, account, settings.llm_explains_per_hour)
    held = Held(_running(request), account.id)
    slots = _slots(request, max(1, settings.llm_explain_concurrency))
    try:
        async with asyncio.timeout(settings.llm_explain_queue_wait_s):
            await slots.acquire()
    except TimeoutError:
        held.release()
        retry_after = max(1, math.ceil(settings.llm_explain_deadline_s))
        raise HTTPException(
            503,
            f"The LLM is busy with {settings.llm_explain_concurrency} other explanation(s) "
            f"(RECSAE_LLM_EXPLAIN_CONCURRENCY); try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        ) from None
    except BaseException:
        held.release()
        raise
    held.slot = slots
    return held
