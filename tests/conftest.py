"""Session-wide fixtures: a real PostgreSQL server on loopback for the tests marked ``postgres``
(started by :func:`tests.postgres_server.postgres_server`, which benchmarks/load.py uses too),
one per pytest process (each xdist worker has its own), with an empty database for each test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.postgres_server import PostgresNotInstalled, fresh_database, pg_bin, postgres_server

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# Tests train with a fixed thread count, so a result is the same whatever else the machine runs
# (the automatic count, worker/threads.py, sums SASRec's floats in another order when it
# changes; tests/worker/test_threads.py tests the automatic choice with given load readings).
# Under pytest-xdist (scripts/test.sh) the workers share the cores: each trains on its share.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, len(os.sched_getaffinity(0)) // _WORKERS))
os.environ.setdefault("RECSAE_THREADS", str(_THREADS))

_databases = itertools.count()
HEAVY = ("slow", "llm", "long")  # markers of the modules that take minutes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a test marked ``slow``, ``llm`` or ``long`` first, the rest after, each group
    in the random order pytest-randomly gave it (a stable sort; a module's tests stay together): the
    xdist workers (``--dist loadfile --no-loadscope-reorder``, scripts/test.sh) take the longest
    files first and share the short ones at the end, instead of one worker finishing a long
    file alone."""
    heavy = {item.path for item in items if any(item.get_closest_marker(m) for m in HEAVY)}
    items.sort(key=lambda item: item.path not in heavy)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the (administrative) database of a PostgreSQL server started for this process."""
    try:
        pg_bin()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc))
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """URL of an empty database of this test's own (dropped after it): nothing one test writes
    is seen by another, in whatever order they run."""
    with fresh_database(postgres_server_url, f"test_{next(_databases)}") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> sessionmaker[Session]:
    """Sessions on a migrated, empty database of this test's own, once on SQLite and once on
    PostgreSQL: what the store keeps (ids, sequences, human work) must not depend on the engine."""
    from core.store import migrate
    from core.store.engine import session_factory

    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'recsae.db'}"
    migrate.upgrade(url)
    return session_factory(url)
