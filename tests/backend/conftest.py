"""Fixtures: a migrated SQLite DB holding the factory run, Settings pointing at it, a client.

The DB is built once per session (alembic + publish_run take a few hundred ms) and only read
by page tests; tests that write get their own through ``fresh_settings``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.factories import publish_fixture

# TestClient sends Host: testserver; the app answers only the hosts it is told (issue 8 §2).
TEST_HOSTS = ["testserver", "127.0.0.1", "localhost"]


def make_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'recsae.db'}",
        allowed_hosts=TEST_HOSTS,
    )


@pytest.fixture(scope="session")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    settings = make_settings(tmp_path_factory.mktemp("explorer"))
    migrate.upgrade(settings.resolved_database_url)
    rows = publish_fixture(session_factory(settings.resolved_database_url))
    return settings, rows


@pytest.fixture(scope="session")
def settings(fixture_db: tuple[Settings, dict[str, Any]]) -> Settings:
    return fixture_db[0]


@pytest.fixture(scope="session")
def rows(fixture_db: tuple[Settings, dict[str, Any]]) -> dict[str, Any]:
    """The rows the fixture run was published from (for exact expectations)."""
    return fixture_db[1]


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Settings:
    """An empty, migrated DB of its own (for tests that write)."""
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    return settings


@pytest.fixture
def fresh_sessions(fresh_settings: Settings) -> sessionmaker[Session]:
    return session_factory(fresh_settings.resolved_database_url)


@pytest.fixture
def published(fresh_settings: Settings) -> Settings:
    """A fresh DB with the fixture run; no LLM configured (an explain past the checks is 503).
    Modules that need another shape (test_explain*.py) define their own."""
    publish_fixture(session_factory(fresh_settings.resolved_database_url))
    return fresh_settings.model_copy(update={"llm_base_url": None})


@pytest.fixture
def app_client(published: Settings) -> Iterator[TestClient]:
    """A signed-out client of its own on :func:`published` (sign in with
    ``tests.backend.accounts.signed_in``)."""
    with TestClient(create_app(published)) as client:
        yield client
