"""Explanations as durable jobs in tests (docs/jobs.md): queue one through the API, let a worker
in this process do every queued job (``core.jobs.Worker``, exactly what ``recsae worker`` runs),
and read the job back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from core.jobs import Worker
from core.settings import Settings
from core.store.engine import session_factory


def work(settings: Settings, name: str = "test-worker") -> int:
    """Do every queued job now; how many were done."""
    sessions = session_factory(settings.resolved_database_url)
    return Worker(settings, sessions, name).run(until_idle=True)


def explained(client: TestClient, url: str, settings: Settings | None = None) -> dict[str, Any]:
    """POST ``url`` (202: queued), do the job (with the app's settings unless ``settings``), and
    return the job as the API shows it."""
    settings = settings or client.app.state.settings  # type: ignore[attr-defined]
    assert settings is not None
    response = client.post(url)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == response.json()["url"]
    work(settings)
    job = client.get(response.json()["url"])
    assert job.status_code == 200, job.text
    return job.json()


def result(client: TestClient, url: str, settings: Settings | None = None) -> dict[str, Any]:
    """The saved explanation of a done job (what the POST answered before jobs)."""
    job = explained(client, url, settings)
    assert job["state"] == "done", job
    body: dict[str, Any] = job["result"]
    return body
