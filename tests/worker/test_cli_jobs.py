"""``recsae serve`` starts one ``recsae worker`` beside the server and stops it with itself
(worker/cli.py ``_serve``, worker/cli_jobs.py, docs/jobs.md): a job queued while it serves is
done, and once it is stopped nothing does the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from core.net import free_port
from core.settings import REPO_ROOT, Settings
from core.store import jobs as store
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.accounts import create_account
from tests.backend.factories import publish_fixture
from tests.backend.test_explain_null import NO_LIMITS, label_aware
from tests.worker.test_llm_client import scripted

__all__ = ["scripted"]


def _state(settings: Settings, job_id: int) -> str:
    with session_factory(settings.resolved_database_url)() as session:
        job = store.get(session, job_id)
        assert job is not None
        return job.state


def test_serve_starts_a_job_worker_beside_the_server_and_stops_it(
    tmp_path: Path, scripted: Callable
) -> None:
    server = scripted(label_aware())
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'serve.db'}",
        llm_base_url=server.base_url,
        job_poll_s=0.1,
        **NO_LIMITS,
    )
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    publish_fixture(sessions)
    owner = create_account(sessions, "annotator").id
    port = free_port()
    env = {**os.environ, **settings.as_environment()}
    parent = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--port", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert parent.poll() is None and time.monotonic() < deadline, "no server"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/index.json", timeout=2).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        job = store.enqueue(sessions, "fixture", 0, owner, 0)
        while _state(settings, job) != "done":
            assert time.monotonic() < deadline + 60, f"job {job}: {_state(settings, job)}"
            time.sleep(0.1)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
    # stopped with the server: a job queued now stays queued
    after = store.enqueue(sessions, "fixture", 1, owner, 0)
    time.sleep(2)
    assert _state(settings, after) == "queued"
