"""A PostgreSQL host that accepts the connection and never answers (a hung server, a proxy in
front of a dead one) costs a request seconds, not the operating system's TCP timeout: libpq's
connect_timeout (core/store/engine.py) ends the attempt and the request answers 503 with
Retry-After (backend/errors.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from backend.app import create_app
from core.settings import Settings
from core.store.engine import CONNECT_TIMEOUT_S, make_engine
from tests.backend.conftest import TEST_HOSTS

# How long a test waits before calling the attempt hung (then it fails instead of hanging).
HUNG_AFTER_S = 30


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A PostgreSQL URL whose port completes the TCP handshake (the kernel does, from the
    listen backlog) and then never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        yield f"postgresql+psycopg://recsae@127.0.0.1:{port}/recsae"
    finally:
        listener.close()  # a connection still waiting then sees the end of the stream


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds taken, result or exception) of ``call`` in a thread, failing after
    HUNG_AFTER_S rather than waiting for the TCP timeout."""
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["result"] = call()
        except Exception as exc:  # the test inspects it
            out["result"] = exc
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HUNG_AFTER_S)
    assert not thread.is_alive(), f"still connecting after {HUNG_AFTER_S} s: no connect timeout"
    return out["seconds"], out["result"]


def test_a_silent_database_host_fails_the_connection_in_seconds(silent_url: str) -> None:
    engine = make_engine(silent_url)
    try:
        seconds, result = timed(engine.connect)
    finally:
        engine.dispose()
    assert isinstance(result, OperationalError), result
    assert "timeout" in str(result).lower(), result
    assert CONNECT_TIMEOUT_S - 0.5 <= seconds < CONNECT_TIMEOUT_S + 5, seconds


def test_a_url_keeps_its_own_connect_timeout(silent_url: str) -> None:
    engine = make_engine(silent_url + "?connect_timeout=2")
    try:
        seconds, result = timed(engine.connect)
    finally:
        engine.dispose()
    assert isinstance(result, OperationalError), result
    assert 1.5 <= seconds < CONNECT_TIMEOUT_S - 0.2, seconds


def test_a_silent_database_answers_503_in_seconds(silent_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=silent_url, allowed_hosts=TEST_HOSTS)
    client = TestClient(create_app(settings))  # no lifespan: it would migrate the database
    seconds, answer = timed(lambda: client.get("/runs/fixture.json"))
    assert not isinstance(answer, Exception), answer
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert answer.json()["detail"].startswith("The database is not answering")
    assert seconds < CONNECT_TIMEOUT_S + 5, seconds
