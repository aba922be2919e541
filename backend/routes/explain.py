"""Re-explain one latent with the configured LLM, from the browser (issue 4 §3).

POST /api/runs/{run_id}/latents/{idx}/explain: explain the latent from its stored construction
examples, verify the explanation on its stored verification + random examples (paper §3.3,
eq. 4), append it to the latent's concept history, and return it with its score, model and time.

Why rate-limited: every call costs about 1 + 2N LLM requests; a per-client-IP token bucket
(``RECSAE_LLM_RATE_LIMIT_PER_MINUTE``, 0 disables it) keeps one browser from monopolising the
LLM. The answer bypasses the LLM cache: the user asked for a *new* explanation.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from backend.auth import AccountDep
from backend.deps import LatentDep, RunDep, SessionDep, SettingsDep
from core.llm.client import LLMBadResponse, LLMClient, LLMNotConfigured, LLMUnreachable
from core.llm.concepts import (
    ItemLookup,
    LatentCases,
    LLMConceptConfig,
    aexplain_and_verify,
)
from core.llm.prompts import PromptContext, oneshot_kind
from core.store import reads
from core.store.writes import add_concept

router = APIRouter(tags=["llm"])


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


@router.post("/api/runs/{run_id}/latents/{idx}/explain", summary="Re-explain a latent (LLM)")
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
        raise HTTPException(503, str(exc)) from exc
    _check_rate(request, settings.llm_rate_limit_per_minute)
    cases = _latent_cases(session, run.id, latent.idx, latent.too_rare)
    ctx = PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset))
    # N as the run recorded it: its stored examples are all the cases there are.
    config = LLMConceptConfig(n=max(len(cases.construction), len(cases.verification), 1))
    started = time.perf_counter()
    try:
        concept = await aexplain_and_verify(cases, client, ctx, config)
    except LLMUnreachable as exc:
        raise HTTPException(502, str(exc)) from exc
    except LLMBadResponse as exc:
        raise HTTPException(502, f"The LLM answered unusably: {exc}") from exc
    finally:
        await client.aclose()
    elapsed_s = time.perf_counter() - started
    created_at = datetime.now(UTC)
    row = {
        **concept.to_row(),
        "run_id": run.id,
        "account_id": account.id,
        "created_at": created_at,
        "details": {**concept.details, "elapsed_s": round(elapsed_s, 3), "source": "web"},
    }
    concept_id = await run_in_threadpool(add_concept, request.app.state.sessions, row)
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
