"""Engine and session factory for the configured database (SQLite by default, or Postgres).

A server sizes its pool from its admission caps (``pool_size``: no overflow) and waits at most
``pool_timeout_s`` for a connection, so a saturated server answers 503 at once instead of
queueing for SQLAlchemy's default 30 s (docs/scaling.md, "Admission"). Everything else (the
worker, the command line, tests) keeps SQLAlchemy's defaults.

A PostgreSQL connection gives up after :data:`CONNECT_TIMEOUT_S` (libpq's ``connect_timeout``,
unless the URL sets its own): without it, a database host that does not answer (down behind a
firewall, a hung server) holds each request until the operating system's TCP timeout, minutes,
instead of answering 503 in seconds (backend/errors.py).

A pooled PostgreSQL connection is pinged (``SELECT 1``, one round trip) before use only when it
has lain idle in the pool longer than :data:`PING_IDLE_S` (:func:`_ping_when_idle`), instead of
before every use (``pool_pre_ping``): a rating POST checks out two connections (the session
lookup, the write), and on a loaded machine each round trip waits for the database's process to
be scheduled (docs/scaling.md, "Admission"). A connection the server lost while idle (a restart,
an idle timeout) is still found and replaced before a request uses it; one lost within the last
PING_IDLE_S fails that one request, and SQLAlchemy then replaces every older connection.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

# libpq's connect_timeout, seconds (it counts whole seconds, at least 2).
CONNECT_TIMEOUT_S = 3
# A pooled PostgreSQL connection idle longer than this is pinged before use (seconds).
PING_IDLE_S = 10.0
_CHECKED_IN = "recsae_checked_in_at"  # time.monotonic() of the connection's last check-in


def _pool_options(pool_size: int | None, pool_timeout_s: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if pool_size is not None:
        if pool_size < 1:
            raise ValueError(f"a database pool needs at least one connection, not {pool_size}")
        options.update(pool_size=pool_size, max_overflow=0)
    if pool_timeout_s is not None:
        options["pool_timeout"] = pool_timeout_s
    return options


def make_engine(
    url: str, pool_size: int | None = None, pool_timeout_s: float | None = None
) -> Engine:
    options = _pool_options(pool_size, pool_timeout_s)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:  # DB-API objects: untyped
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the publishing writer
            # WAL's recommended sync level: a commit survives a crash of the process (not of the
            # machine's power) without an fsync each; writes queue on one lock (core/studies.py)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    connect_args = (
        {} if "connect_timeout" in make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT_S}
    )
    engine = create_engine(url, connect_args=connect_args, **options)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout when it has been idle over PING_IDLE_S (a fresh one
    never): SQLAlchemy's ``pool_pre_ping`` without the round trip on a busy pool. A lost
    connection is replaced, and every connection older than it, before the request uses one."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since <= PING_IDLE_S:
            return  # just connected, or used moments ago
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                # As pool_pre_ping does: the pool retries with a new connection.
                raise exc.InvalidatePoolError() from err
            raise


def engine_for(
    url: str, pool_size: int | None = None, pool_timeout_s: float | None = None
) -> Engine:
    """The one engine of this process for these arguments: ``engine_for(url)`` and
    ``engine_for(url, None, None)`` are the same engine (lru_cache alone keys them apart)."""
    return _cached_engine(url, pool_size, pool_timeout_s)


@lru_cache(maxsize=8)
def _cached_engine(url: str, pool_size: int | None, pool_timeout_s: float | None) -> Engine:
    return make_engine(url, pool_size, pool_timeout_s)


def session_factory(
    url: str, pool_size: int | None = None, pool_timeout_s: float | None = None
) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url, pool_size, pool_timeout_s), expire_on_commit=False)
