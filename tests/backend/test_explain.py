"""POST /api/runs/{run}/latents/{idx}/explain queues a job (docs/jobs.md): 503 without an LLM,
a failed job (no URL in its reason) when it is unreachable, 429 past the rate limit, and a
verified, stored explanation against a scripted LLM once a worker did the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from core.llm.concepts import ItemLookup
from core.settings import Settings
from core.store import reads
from core.store.engine import session_factory
from tests.backend.accounts import signed_in
from tests.backend.factories import publish_fixture
from tests.backend.jobs import explained, result
from tests.worker.test_llm_client import Reply, chat_reply, closed_port_url, scripted

__all__ = ["scripted"]

URL = "/api/runs/fixture/latents/0/explain"


@pytest.fixture
def published(fresh_settings: Settings) -> dict[str, Any]:
    return publish_fixture(session_factory(fresh_settings.resolved_database_url))


def app_client(settings: Settings, **llm: Any) -> TestClient:
    """A client signed in as an annotator (explaining needs an account, issue 8 §2)."""
    client = TestClient(create_app(settings.model_copy(update=llm)))
    signed_in(client, "annotator")
    return client


def level_by_parity(rows: dict[str, Any]) -> Callable[[dict[str, Any]], Reply]:
    """Explain "tense films"; level 9 for odd items, 1 for even ones (by the prompt's label)."""
    items = rows["items"]
    lookup = ItemLookup([it["title"] for it in items], [it["genres"] for it in items])
    idx_of = {lookup.label(i): i for i in range(len(items))}

    def answer(payload: dict[str, Any]) -> Reply:
        content = payload["messages"][-1]["content"]
        if "Activations:" in content:
            return chat_reply("tense films")
        label = content.split("in the sequence:\n")[1].split("\n")[0]
        return chat_reply("9" if idx_of[label] % 2 else "1")

    return answer


def test_no_llm_configured_is_503(fresh_settings: Settings, published: dict[str, Any]) -> None:
    with app_client(fresh_settings, llm_base_url=None) as client:
        response = client.post(URL)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("No LLM is configured: set RECSAE_LLM_BASE_URL")


def test_unreachable_llm_is_502_without_its_url(
    fresh_settings: Settings, published: dict[str, Any]
) -> None:
    url = closed_port_url()
    settings = fresh_settings.model_copy(update={"llm_base_url": url, "llm_retries": 0})
    with app_client(settings) as client:
        job = explained(client, URL, settings)
    assert job["state"] == "failed" and job["result"] is None
    detail = job["error"]
    assert detail.startswith("The LLM server did not answer; nothing was saved")
    assert url.split("//")[1].split("/")[0] not in detail  # the LLM's address is internal


def test_unknown_latent_is_404(fresh_settings: Settings, published: dict[str, Any]) -> None:
    with app_client(fresh_settings, llm_base_url="http://127.0.0.1:9/v1") as client:
        response = client.post("/api/runs/fixture/latents/999/explain")
    assert response.status_code == 404 and "no latent 999" in response.json()["detail"]


def test_explain_verifies_and_stores(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(level_by_parity(published))
    settings = fresh_settings.model_copy(update={"llm_base_url": server.base_url})
    with app_client(settings) as client:
        body = result(client, URL, settings)
    # expected eq. 4 from the fixture's stored examples: positives are verification cases
    examples = [e for e in published["examples"] if e["latent_idx"] == 0]
    pos = [e["predicted_item"] % 2 == 1 for e in examples if e["role"] == "verification"]
    neg = [e["predicted_item"] % 2 == 0 for e in examples if e["role"] == "random"]
    assert body["confidence"] == pytest.approx((sum(pos) + sum(neg)) / (len(pos) + len(neg)))
    assert body["text"] == "tense films" and body["status"] == "verified"
    assert body["model"] == "scripted-model" and body["elapsed_s"] >= 0
    assert len(body["details"]["cases"]) == len(pos) + len(neg)
    # the null (docs/method.md §1.11): the 5 distinct other labels of the fixture, each on the
    # same 2N cases, scored live (no stored null of this latent to reuse)
    assert (body["null_n"], body["null_method"]) == (5, "live")
    assert len(server.requests) == 1 + (len(pos) + len(neg)) * (1 + 5)
    sessions = session_factory(fresh_settings.resolved_database_url)
    with sessions() as session:
        stored = reads.latent_concepts(session, "fixture", 0)[0]
    assert (stored.id, stored.method, stored.text) == (body["id"], "llm", "tense films")
    assert stored.confidence == body["confidence"] and stored.model == "scripted-model"


def test_rate_limit_is_429_with_retry_after(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(level_by_parity(published))
    settings = {"llm_base_url": server.base_url, "llm_rate_limit_per_minute": 2}
    with app_client(fresh_settings, **settings) as client:
        codes = [client.post(URL).status_code]
        client.post(f"/api/jobs/{client.get(URL[:-8] + '/job').json()['job']['id']}/cancel")
        codes.append(client.post(URL).status_code)
        limited = client.post(URL)
    assert codes == [202, 202]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "at most 2 per minute" in limited.json()["detail"]


def test_latent_page_has_the_explain_button(
    fresh_settings: Settings, published: dict[str, Any]
) -> None:
    with app_client(fresh_settings) as client:
        page = client.get("/runs/fixture/latents/0")
    assert page.status_code == 200
    assert 'data-explain-url="/api/runs/fixture/latents/0/explain"' in page.text
    assert "/static/explain.js" in page.text
