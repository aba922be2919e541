"""Session-wide fixtures: a real PostgreSQL server on loopback for the tests marked ``postgres``
(started by :func:`tests.postgres_server.postgres_server`, which benchmarks/load.py uses too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Tests train with a fixed thread count, so a result is the same whatever else the machine runs
# (the automatic count, worker/threads.py, sums SASRec's floats in another order when it
# changes; tests/worker/test_threads.py tests the automatic choice with given load readings).
os.environ.setdefault("RECSAE_THREADS", "2")

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
