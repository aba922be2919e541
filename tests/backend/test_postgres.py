"""The same migrations and the same atomic publish work on a real PostgreSQL server."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.store.engine import session_factory
from core.store.schema import Latent, Run
from core.store.writes import publish_run

pytestmark = pytest.mark.postgres


def _run(run_id: str) -> dict:
    return dict(
        id=run_id, dataset="tiny", recommender="bprmf", artifact_dir="/nowhere",
        n_users=1, n_items=1, n_latents=2, k=1, config={}, metrics={"x": 1},
    )  # fmt: skip


def _latent(idx: int) -> dict:
    return dict(idx=idx, density=0.5, max_activation=1.0, mean_activation=0.5)


def test_migrate_and_publish_on_postgres(postgres_url: str) -> None:
    from core.store.migrate import upgrade

    upgrade(postgres_url)
    sessions = session_factory(postgres_url)
    publish_run(sessions, _run("pg-run"), [], [], [_latent(0), _latent(1)], [], [], [])
    with sessions() as s:
        assert s.scalar(select(Run.status).where(Run.id == "pg-run")) == "ready"
        # Only this run's rows: other tests share the session's PostgreSQL database.
        mine = select(func.count()).select_from(Latent).where(Latent.run_id == "pg-run")
        assert s.scalar(mine) == 2

    # A publish that fails midway (duplicate latent idx) leaves the previous version intact.
    with pytest.raises(IntegrityError):
        publish_run(sessions, _run("pg-run"), [], [], [_latent(5), _latent(5)], [], [], [])
    with sessions() as s:
        idxs = s.scalars(select(Latent.idx).where(Latent.run_id == "pg-run")).all()
        assert sorted(idxs) == [0, 1]
