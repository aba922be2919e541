"""Issue 11 §6, explain with progress. Found: 13–21 s with a disabled button and no progress or
elapsed time, and the LLM card unchanged until a reload. The POST now streams its stages as
server-sent events (``Accept: text/event-stream``), then the saved explanation; the limits
(CSRF, quota, concurrency cap, deadline) hold for the stream as for the JSON answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from core.settings import Settings
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.accounts import signed_in
from tests.backend.test_explain_null import N_OTHERS, NO_LIMITS, URL, label_aware, many_labels_rows
from tests.worker.test_llm_client import closed_port_url, scripted

__all__ = ["scripted"]

STREAM = {"accept": "text/event-stream"}


@pytest.fixture
def published(fresh_settings: Settings) -> dict[str, Any]:
    # 19 distinct other LLM labels: a null large enough to be a 5% test (docs/method.md §1.11)
    rows = many_labels_rows()
    publish_run(session_factory(fresh_settings.resolved_database_url), **rows)
    return rows


def events(client: TestClient, url: str = URL) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """(status, [(event, data), ...]) of one streamed explanation, parsed as a browser would."""
    with client.stream("POST", url, headers=STREAM) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, [("http", response.json())]
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in response.headers  # each event arrives as it is sent
        text = "".join(response.iter_text())
    parsed = []
    for block in filter(None, text.split("\n\n")):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        parsed.append((lines["event"], json.loads(lines["data"])))
    return 200, parsed


def client_for(settings: Settings, **llm: Any) -> TestClient:
    client = TestClient(create_app(settings.model_copy(update={**NO_LIMITS, **llm})))
    signed_in(client, "annotator")
    return client


def test_explain_streams_its_stages_then_the_saved_explanation(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(label_aware())
    with client_for(fresh_settings, llm_base_url=server.base_url) as client:
        status, stream = events(client)
        twin = client.get("/runs/fixture/latents/0.json").json()
    assert status == 200
    stages = [data for name, data in stream if name == "stage"]
    order = list(dict.fromkeys(s["stage"] for s in stages))
    assert order[0] in ("queued", "explain") and order[-3:] == ["verify", "null", "save"]
    verify = [s for s in stages if s["stage"] == "verify"]
    assert list(dict.fromkeys(s["done"] for s in verify)) == [0, 1, 2, 3, 4]  # each answer
    assert verify[-1]["text"] == "verifying on 4 cases (4/4 answered)"
    nulls = [s for s in stages if s["stage"] == "null"]
    assert nulls[-1]["done"] == nulls[-1]["total"] == N_OTHERS
    assert nulls[-1]["text"].startswith(f"null {N_OTHERS}/{N_OTHERS}: other latents' labels")
    elapsed = [s["elapsed_s"] for s in stages]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 0
    name, done = stream[-1]
    assert name == "done" and [n for n, _ in stream].count("done") == 1
    assert (done["text"], done["verified"], done["null_p95"]) == ("tense films", True, 0.5)
    # done means saved: the latent's card and history (its JSON twin) already show it
    assert twin["history"][0]["id"] == done["id"]
    assert twin["concepts"]["llm"]["concept_id"] == done["id"]
    assert twin["concepts"]["llm"]["verdict_text"] == done["verdict_text"]


def test_llm_failure_in_the_stream_is_an_error_event_and_nothing_is_saved(
    fresh_settings: Settings, published: dict[str, Any]
) -> None:
    url = closed_port_url()
    with client_for(fresh_settings, llm_base_url=url) as client:
        status, stream = events(client)
        history = client.get("/runs/fixture/latents/0.json").json()["history"]
    assert status == 200
    name, error = stream[-1]
    assert name == "error" and error["status"] == 502
    assert "nothing was saved" in error["detail"]
    assert url.split("//")[1].split("/")[0] not in error["detail"]  # the LLM's address
    assert all(h["source"] == "pipeline" for h in history)


def test_streamed_explain_keeps_csrf_quota_and_the_no_llm_answer(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(label_aware())
    with client_for(fresh_settings, llm_base_url=None) as client:
        status, stream = events(client)
    assert status == 503 and "RECSAE_LLM_BASE_URL" in stream[0][1]["detail"]
    settings = {"llm_base_url": server.base_url, "llm_explains_per_hour": 1}
    with client_for(fresh_settings, **settings) as client:
        assert events(client)[1][-1][0] == "done"
        status, stream = events(client)
        assert status == 429 and "RECSAE_LLM_EXPLAINS_PER_HOUR" in stream[0][1]["detail"]
        del client.headers["X-CSRF-Token"]
        status, stream = events(client)
    assert status == 403 and "CSRF" in stream[0][1]["detail"]
