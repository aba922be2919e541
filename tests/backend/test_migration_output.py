"""Migration 0008 (docs/method.md §1.9, "Output check"): an old database gains the output-check
columns (the latents' per-method verdict, the concepts' record), every old row reads NULL ("not
checked"), a new row stores its check, and downgrading drops them again. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from core.store import migrate


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _old_rows(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, dataset, recommender, created_at, artifact_dir, n_users, "
            "n_items, n_latents, k, status, item_category, item_name, config, metrics) "
            "VALUES ('old', 'd', 'bprmf', '2026-01-01', 'x', 1, 1, 2, 1, 'ready', 'movie', "
            "'movie', '{}', '{}')"
        )
    )
    for idx in (0, 1):
        conn.execute(
            sa.text(
                "INSERT INTO latents (run_id, idx, density, max_activation, mean_activation, "
                "dead, histogram, level_edges, n_active_construction, n_active_verification, "
                "too_rare, promoted, suppressed, tfidf_confidence, tfidf_concept, tuning) "
                "VALUES ('old', :i, 0, 0, 0, false, '{}', '[]', 0, 0, false, '[]', '[]', 0.9, "
                "'horror', '{}')"
            ),
            {"i": idx},
        )
    conn.execute(
        sa.text(
            "INSERT INTO concepts (run_id, latent_idx, method, text, terms, confidence, status, "
            "details, created_at) VALUES ('old', 0, 'tfidf', 'horror', '[]', 0.9, 'verified', "
            "'{}', '2026-01-01')"
        )
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0008_old_rows_are_not_checked_and_downgrades(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    config = migrate.alembic_config(url)
    command.upgrade(config, "0007")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _old_rows(conn)
    command.upgrade(config, "0008")
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text("SELECT idx, tfidf_output, llm_output FROM latents ORDER BY idx")
        ).all()
        assert [tuple(r) for r in rows] == [(0, None, None), (1, None, None)]
        assert conn.execute(sa.text("SELECT output FROM concepts")).scalar_one() is None
        check = {"verdict": "confirmed", "n_users": 143, "boosted_ci": [0.1, 0.2]}
        conn.execute(sa.text("UPDATE latents SET tfidf_output = 'confirmed' WHERE idx = 1"))
        conn.execute(sa.text("UPDATE concepts SET output = :o"), {"o": json.dumps(check)})
        stored = conn.execute(sa.text("SELECT output FROM concepts")).scalar_one()
        assert (json.loads(stored) if isinstance(stored, str) else stored) == check
        assert conn.execute(
            sa.text("SELECT idx FROM latents WHERE tfidf_output = 'confirmed'")
        ).scalars().all() == [1]
    command.downgrade(config, "0007")
    with engine.begin() as conn:
        latents = {c["name"] for c in sa.inspect(conn).get_columns("latents")}
        concepts = {c["name"] for c in sa.inspect(conn).get_columns("concepts")}
    assert "tfidf_output" not in latents and "llm_output" not in latents
    assert "output" not in concepts and "tfidf_verdict" in latents
    engine.dispose()
