"""A pooled PostgreSQL connection is pinged before use only when it has been idle (core/store/
engine.py): none of the round trips of ``pool_pre_ping`` on a busy pool, and a connection the
server dropped while it lay idle is still replaced before a request uses it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from core.store import engine as engine_module
from core.store.engine import make_engine


@pytest.fixture
def pooled(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url, pool_size=1, pool_timeout_s=1)
    yield engine
    engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_used_moments_ago_is_not_pinged(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[Any] = []
    real = pooled.dialect.do_ping
    monkeypatch.setattr(pooled.dialect, "do_ping", lambda conn: pings.append(conn) or real(conn))
    pids = {_backend_pid(pooled) for _ in range(3)}
    assert len(pids) == 1  # one pooled connection, used three times
    assert pings == []  # the reference: the dialect's own ping, counted
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # now every idle moment is long
    assert _backend_pid(pooled) in pids
    assert len(pings) == 1


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    pooled: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _backend_pid(pooled)
    killer = create_engine(postgres_url)
    try:
        with killer.connect() as conn:  # the server ends it while it lies in the pool
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        killer.dispose()
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)
    assert _backend_pid(pooled) != pid  # pinged, found dead, replaced: the query ran
