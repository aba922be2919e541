"""Re-explain one latent with the configured LLM, from the browser.

POST /api/runs/{run_id}/latents/{idx}/explain: explain the latent from its stored construction
examples, verify the explanation on its stored verification + random examples (paper §3.3,
eq. 4), compare it with a null (docs/method.md §1.11: a stored one when the same model made it on
the same cases, else other latents' labels scored live), append it to the latent's concept
history, and return it with its score, null, verdict (``core.reports.is_verified``), model and
time. With ``Accept: text/event-stream`` the answer streams the stages as server-sent events
(``stage``, then ``done`` or ``error``: :mod:`backend.explain_job`), so the page can show what
is being asked and for how long; otherwise it is one JSON answer when everything is done.

Before anything runs (plain HTTP errors in both cases): 503 without an LLM, the per-client rate
limit, the per-account quota and the process's concurrency cap (:mod:`backend.explain_limits`).
One deadline (``RECSAE_LLM_EXPLAIN_DEADLINE_S``) bounds explain, verify and null. The answer
bypasses the LLM cache: the user asked for a *new* explanation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from backend import explain_job
from backend.auth import AccountDep
from backend.deps import LatentDep, RunDep, SessionDep, SettingsDep
from backend.errors import responses
from backend.explain_limits import check_rate, hold
from core.llm.client import LLMClient, LLMNotConfigured
from core.llm.concepts import STATUS_VERIFIED, ItemLookup, LatentCases, LLMConcept, LLMConceptConfig
from core.llm.live_null import Earlier
from core.llm.prompts import PromptContext, oneshot_kind
from core.store import concept_reads, reads

log = logging.getLogger(__name__)
router = APIRouter(tags=["llm"])
EVENT_STREAM = "text/event-stream"
# Null concepts of a live explanation: as many as the pipeline's default (worker RunConfig
# llm_null), the 19 a 5% rank test needs (core.reports.NULL_MIN_N); each costs 2N requests,
# all sent at once within the deadline (docs/method.md §1.11).
WEB_NULL_SIZE = 19


def _client(settings: SettingsDep) -> LLMClient:
    try:
        return LLMClient.from_settings(settings, use_cache=False)
    except LLMNotConfigured as exc:
        log.warning("explain: %s", exc)
        # Without a URL the message says what to set; a bad URL is not shown (it is internal).
        detail = str(exc)
        if settings.llm_base_url:
            detail = "The LLM is misconfigured (RECSAE_LLM_BASE_URL is not an http(s) URL); "
            detail += "the server's log has the details"
        raise HTTPException(503, detail) from None


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


def _null_material(
    session: SessionDep, run_id: str, version: int, idx: int
) -> tuple[list[Earlier], list[LLMConcept]]:
    """This latent's earlier LLM explanations of this version (a null to reuse) and the run's
    other latents' labels (null concepts), read before the explanation starts."""
    earlier = [
        Earlier(c.id, c.model, dict(c.details or {}))
        for c in reads.latent_concepts(session, run_id, idx)
        if c.method == "llm" and c.run_version == version
    ]
    pool = [
        LLMConcept(latent, text, None, STATUS_VERIFIED, "")
        for latent, text in concept_reads.other_llm_labels(session, run_id, version, idx)
    ]
    return earlier, pool


@router.post(
    "/api/runs/{run_id}/latents/{idx}/explain",
    summary="Re-explain a latent (LLM)",
    responses={
        **responses(401, 403, 404, 409, 429, 502, 503, 504),
        200: {
            "description": "The saved explanation with its null and verdict (JSON), or with "
            f"Accept: {EVENT_STREAM} the stages as server-sent events, then it",
            "content": {EVENT_STREAM: {}},
        },
    },
)
async def explain_latent(
    request: Request,
    run: RunDep,
    latent: LatentDep,
    session: SessionDep,
    settings: SettingsDep,
    account: AccountDep,
) -> Any:
    """A new LLM explanation of the latent, verified on its stored examples, compared with its
    null, and saved (streamed stage by stage with ``Accept: text/event-stream``)."""
    started = time.perf_counter()
    client = _client(settings)
    check_rate(request, settings.llm_rate_limit_per_minute)
    cases = _latent_cases(session, run.id, latent.idx, latent.too_rare)
    earlier, pool = _null_material(session, run.id, run.version, latent.idx)
    inputs = explain_job.ExplainInputs(
        client=client,
        cases=cases,
        ctx=PromptContext(run.item_category, run.item_name, oneshot_kind(run.dataset)),
        # N as the run recorded it: its stored examples are all the cases there are.
        config=LLMConceptConfig(n=max(len(cases.construction), len(cases.verification), 1)),
        deadline_s=settings.llm_explain_deadline_s,
        earlier=earlier,
        pool=pool,
        null_size=WEB_NULL_SIZE,
        seed=settings.llm_seed,
        sessions=request.app.state.sessions,
        row={"run_id": run.id, "account_id": account.id, "run_version": run.version},
    )
    held = await hold(request, session, account, settings)
    # The reads are done: give the connection back while the LLM works (seconds); the job saves
    # through its own session (docs/scaling.md, "Admission").
    session.close()
    job = explain_job.start(inputs, held, started)
    assert job.task is not None
    if EVENT_STREAM in request.headers.get("accept", ""):
        return StreamingResponse(
            job.events(),
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    return await job.task
