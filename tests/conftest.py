"""Session-wide fixtures: a real PostgreSQL server on loopback for the tests marked ``postgres``
(started by :func:`tests.postgres_server.postgres_server`, which benchmarks/load.py uses too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresNotInstalled, pg_bin, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh database on a PostgreSQL server started for this test session."""
    try:
        pg_bin()
    except PostgresNotInstalled as exc:
        pytest.fail(str(exc))
    with postgres_server() as url:
        yield url
