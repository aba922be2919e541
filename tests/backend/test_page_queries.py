"""The latent and user pages read the database in a fixed, small number of statements, on
SQLite and PostgreSQL (docs/scaling.md, "Admission": a page's time on PostgreSQL is mostly
round trips). Counted with a SQLAlchemy ``before_cursor_execute`` listener on the app's engine,
for pages whose latents have few and many examples, concepts and items: the count must not
grow with them (no query per row), and must stay within QUERY_BUDGET.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from backend.app import create_app
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.synthetic_run import make_run

RUN = "pages"
# Statements per page, the pool's liveness check (PostgreSQL) included.
# Measured: latent page 7 (run, latent, examples, concepts, their items, closed studies' human
# means, the inline neighbours' concepts), user page 4 (run, user, its items, the latents of its
# sliders), on both engines.
QUERY_BUDGET = {"latent": 7, "user": 4}


def _client(data_dir: Path, url: str) -> Iterator[tuple[TestClient, list[str]]]:
    migrate.upgrade(url)
    make_run(
        data_dir, session_factory(url), RUN, n_items=300, n_users=40, d=16, n_latents=64, k=4,
        n_tags=12, seed=5, examples_per_role=4,
    )  # fmt: skip
    settings = Settings(data_dir=data_dir, database_url=url, allowed_hosts=["testserver"])
    app = create_app(settings)
    statements: list[str] = []
    engine = app.state.sessions.kw["bind"]

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    with TestClient(app) as client:
        yield client, statements
    event.remove(engine, "before_cursor_execute", count)


@pytest.fixture(params=["sqlite", "postgres"])
def counted(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, list[str]]]:
    if request.param == "sqlite":
        yield from _client(tmp_path, f"sqlite:///{tmp_path / 'recsae.db'}")
    else:
        yield from _client(tmp_path, request.getfixturevalue("postgres_url"))


def _count(client: TestClient, statements: list[str], path: str) -> int:
    client.get(path)  # warm: the steering engine's first build reads its rows once
    statements.clear()
    r = client.get(path)
    assert r.status_code == 200, r.text
    return len(statements)


def test_latent_and_user_pages_take_a_fixed_small_number_of_queries(
    counted: tuple[TestClient, list[str]],
) -> None:
    client, statements = counted
    latent = {i: _count(client, statements, f"/runs/{RUN}/latents/{i}.json") for i in range(12)}
    user = {u: _count(client, statements, f"/runs/{RUN}/users/{u}.json") for u in range(0, 40, 4)}
    assert len(set(latent.values())) == 1, f"latent pages: statements differ by latent {latent}"
    assert len(set(user.values())) == 1, f"user pages: statements differ by user {user}"
    assert max(latent.values()) <= QUERY_BUDGET["latent"], statements
    assert max(user.values()) <= QUERY_BUDGET["user"]


@pytest.mark.postgres
def test_a_publish_leaves_postgresql_the_statistics_of_what_it_wrote(
    postgres_url: str, tmp_path: Path
) -> None:
    """Right after a publish, PostgreSQL's row estimates are the rows written (ANALYZE), and a
    page's lookup of items by index is an index lookup on both key columns, not a read of every
    item of the run filtered afterwards (the plan before statistics: docs/scaling.md)."""
    migrate.upgrade(postgres_url)
    sessions = session_factory(postgres_url)
    make_run(
        tmp_path, sessions, RUN, n_items=3000, n_users=40, d=16, n_latents=64, k=4, n_tags=12,
        seed=5, examples_per_role=4,
    )  # fmt: skip
    tables = ("items", "users", "latents", "examples")
    with sessions() as session:
        counted = {
            t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables
        }
        pg_class = session.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:names)"),
            {"names": list(tables)},
        ).all()
        estimated = {name: tuples for name, tuples in pg_class}
        plan = "\n".join(
            session.execute(
                text(
                    "EXPLAIN SELECT * FROM items WHERE run_id = :run AND idx IN (5, 77, 901, 2048)"
                ),
                {"run": RUN},
            ).scalars()
        )
    assert counted["items"] == 3000
    assert estimated == {t: float(n) for t, n in counted.items()}, (estimated, counted)
    index_conds = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("idx = ANY" in line for line in index_conds), plan
    assert "Filter" not in plan, plan
