"""The LLM under control (issue 8 §3), each test named after the finding it answers.

Found: a hanging LLM held a request for 243 s (4 tries x 60 s); the 502 message showed the LLM's
internal URL; an account could run past its quota. Explanations are jobs now (docs/jobs.md): how
many run at once is how many workers there are (tests/backend/test_jobs.py), a job has a budget
in minutes, and its failure reason is what a user sees. The LLMs here are real servers on
loopback sockets (a scripted OpenAI-compatible one, and one that accepts and never answers):
these tests exercise our limits, not a model.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.app import create_app
from backend.auth import CSRF_HEADER, SESSION_COOKIE
from core import accounts
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import Concept
from tests.backend.accounts import create_account, signed_in
from tests.backend.conftest import make_settings
from tests.backend.factories import publish_fixture
from tests.backend.jobs import work
from tests.backend.test_explain import level_by_parity
from tests.worker.test_llm_client import Reply, closed_port_url, scripted

__all__ = ["scripted"]

URL = "/api/runs/fixture/latents/0/explain"
# Every other limit off, so each test sees only the one it is about.
NO_LIMITS = {
    "llm_rate_limit_per_minute": 0,
    "llm_explains_per_hour": 0,
    "llm_retries": 0,
}


@pytest.fixture
def published(fresh_settings: Settings) -> dict[str, Any]:
    return publish_fixture(session_factory(fresh_settings.resolved_database_url))


def slowed(answer: Callable[[dict[str, Any]], Reply], delay_s: float) -> Callable:
    """``answer``, each reply held back ``delay_s`` by the scripted server."""

    def slow(payload: dict[str, Any]) -> Reply:
        reply = answer(payload)
        reply.delay_s = delay_s
        return reply

    return slow


def concept_count(settings: Settings) -> int:
    with session_factory(settings.resolved_database_url)() as session:
        return session.scalar(select(func.count()).select_from(Concept)) or 0


@pytest.fixture
def silent_llm() -> Iterator[str]:
    """An LLM endpoint that accepts connections and reads requests but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # kept open, never written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


def test_hanging_llm_fails_the_job_within_its_budget(
    tmp_path: Path, silent_llm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget_s = 2.0
    # Configured as an operator would: through the environment (the budget is in minutes).
    monkeypatch.setenv("RECSAE_LLM_BASE_URL", silent_llm)
    monkeypatch.setenv("RECSAE_JOB_BUDGET_MIN", str(budget_s / 60))
    settings = make_settings(tmp_path)
    assert settings.llm_base_url == silent_llm and settings.job_budget_min * 60 == budget_s
    assert settings.llm_timeout_s * (settings.llm_retries + 1) > 10 * budget_s  # 4 x 60 s
    migrate.upgrade(settings.resolved_database_url)
    publish_fixture(session_factory(settings.resolved_database_url))
    before = concept_count(settings)
    with TestClient(create_app(settings)) as client:
        signed_in(client)
        queued = client.post(URL)
        assert queued.status_code == 202, queued.text
        started = time.monotonic()
        work(settings)
        elapsed = time.monotonic() - started
        job = client.get(queued.json()["url"]).json()
    assert job["state"] == "failed", job
    assert budget_s <= elapsed < budget_s + 1.5
    detail = job["error"]
    assert "within the job's budget of 2 s (RECSAE_JOB_BUDGET_MIN)" in detail
    assert "nothing was saved" in detail
    assert silent_llm.split("//")[1].split("/")[0] not in detail
    assert concept_count(settings) == before


def test_llm_error_message_hides_internal_url(
    fresh_settings: Settings,
    published: dict[str, Any],
    scripted: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = closed_port_url()
    refusing = scripted([Reply(404, {"error": "model 'secret-model' not found"})])
    not_json = scripted([Reply(200, "<html>proxy login at http://10.1.2.3/</html>")])
    cases = [
        (closed, 502, "did not answer"),
        (refusing.base_url, 502, "answered unusably"),
        (not_json.base_url, 502, "answered unusably"),
        ("ftp://llm.internal:21/v1", 503, "misconfigured"),
    ]
    for base_url, status, says in cases:
        settings = fresh_settings.model_copy(update={**NO_LIMITS, "llm_base_url": base_url})
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, logger="backend.routes.explain"),
            caplog.at_level(logging.WARNING, logger="core.jobs"),
            TestClient(create_app(settings)) as client,
        ):
            signed_in(client)
            response = client.post(URL)
            if response.status_code == 202:  # queued: the worker's job fails with the reason
                work(settings)
                job = client.get(response.json()["url"]).json()
                response = httpx.Response(502 if job["state"] == "failed" else 200, json={
                    "detail": job["error"]
                })  # fmt: skip
        assert response.status_code == status, (base_url, response.text)
        detail = response.json()["detail"]
        assert says in detail
        host = httpx.URL(base_url).host
        for secret in (host, str(httpx.URL(base_url).port), "/v1", "10.1.2.3", "secret-model"):
            assert secret not in detail, (secret, detail)
        # the operator still learns what went wrong: the server's or worker's log names it
        assert host in caplog.text, caplog.text


def _sign_in_as(client: TestClient, account_id: int) -> None:
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    token, login = accounts.start_session(sessions, account_id, timedelta(hours=1))
    client.cookies.set(SESSION_COOKIE, token)
    client.headers[CSRF_HEADER] = login.csrf_token


def test_per_user_explain_quota(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(level_by_parity(published))
    settings = fresh_settings.model_copy(
        update={**NO_LIMITS, "llm_base_url": server.base_url, "llm_explains_per_hour": 2}
    )
    alice = create_account(settings, "annotator")
    bob = create_account(settings, "annotator")
    with TestClient(create_app(settings)) as client:
        _sign_in_as(client, alice.id)
        codes = []
        for _ in range(2):
            codes.append(client.post(URL).status_code)
            work(settings)  # done: saved concepts count as much as queued jobs
        limited = client.post(URL)
        _sign_in_as(client, bob.id)
        other = client.post(URL)
        work(settings)
    assert codes == [202, 202]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600
    assert "RECSAE_LLM_EXPLAINS_PER_HOUR" in limited.json()["detail"]
    assert other.status_code == 202  # the quota is per account
    requests_so_far = len(server.requests)
    # Counted from the database: another process (here: another app) sees the same quota.
    with TestClient(create_app(settings)) as client:
        _sign_in_as(client, alice.id)
        again = client.post(URL)
    assert again.status_code == 429
    assert len(server.requests) == requests_so_far  # refused before any LLM call
    with session_factory(settings.resolved_database_url)() as session:
        rows = session.execute(
            select(Concept.account_id, Concept.source).where(Concept.account_id.is_not(None))
        ).all()
    assert sorted(rows) == sorted([(alice.id, "web")] * 2 + [(bob.id, "web")])


def test_per_user_explain_quota_holds_for_requests_sent_at_once(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    """Queued jobs count against the quota as soon as they are queued: five requests sent at
    once for five latents queue two (no worker runs here: nothing is saved yet)."""
    server = scripted(level_by_parity(published))
    settings = {**NO_LIMITS, "llm_base_url": server.base_url, "llm_explains_per_hour": 2}
    with TestClient(create_app(fresh_settings.model_copy(update=settings))) as client:
        signed_in(client)
        urls = [f"/api/runs/fixture/latents/{i}/explain" for i in range(5)]
        with ThreadPoolExecutor(5) as pool:
            codes = sorted(pool.map(lambda url: client.post(url).status_code, urls))
    assert codes == [202, 202, 429, 429, 429]
    assert concept_count(fresh_settings) == len(published["concepts"])
