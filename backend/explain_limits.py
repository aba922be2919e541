"""The LLM under control: the limits every re-explanation passes before it is queued
(backend/routes/explain.py, docs/jobs.md).

Every explanation costs about 1 + 2N LLM requests (and up to 2N more per null concept), so
- a per-client-IP token bucket (``RECSAE_LLM_RATE_LIMIT_PER_MINUTE``, 0 disables it) keeps one
  browser from monopolising the LLM;
- a per-account quota (``RECSAE_LLM_EXPLAINS_PER_HOUR``) is counted in the database when the job
  is queued (``core.store.jobs.enqueue``: the account's web concepts of the last hour plus its
  queued and running jobs, in one transaction holding the account row's lock), so it holds
  across server processes, workers and restarts, and for requests sent at once; its refusal is
  :func:`quota_refusal`.
How many explanations run at once is how many ``recsae worker`` processes there are (each does
one job at a time); the rest wait in the queue, not in a request.
"""

from __future__ import annotations

import math
import threading
import time

from fastapi import HTTPException, Request

from core.store.jobs import QuotaExceeded


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


def quota_refusal(username: str, exc: QuotaExceeded) -> HTTPException:
    """The 429 of an account past its quota (``core.store.jobs.enqueue`` counted it)."""
    retry_after = max(1, math.ceil(exc.retry_after_s))
    return HTTPException(
        429,
        f"{username!r} has asked for {exc.per_hour} explanations within the hour, the most "
        f"an account may (RECSAE_LLM_EXPLAINS_PER_HOUR); try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )
