"""Migration 0007 (docs/method.md §1.11): an old database gains the verdict columns; a row
written before the rank p-value exists gets "no_null" when confident (its null was no test) and
"below" otherwise; downgrading drops them again. On SQLite and PostgreSQL."""

from __future__ import annotations

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


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_0007_backfills_verdicts_and_downgrades(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    config = migrate.alembic_config(url)
    command.upgrade(config, "0006")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, dataset, recommender, created_at, artifact_dir, n_users, "
                "n_items, n_latents, k, status, item_category, item_name, config, metrics) "
                "VALUES ('old', 'd', 'bprmf', '2026-01-01', 'x', 1, 1, 3, 1, 'ready', 'movie', "
                "'movie', '{}', '{}')"
            )
        )
        for idx, tfidf, llm in ((0, 0.9, None), (1, 0.5, 0.8), (2, None, None)):
            conn.execute(
                sa.text(
                    "INSERT INTO latents (run_id, idx, density, max_activation, mean_activation, "
                    "dead, histogram, level_edges, n_active_construction, n_active_verification, "
                    "too_rare, promoted, suppressed, tfidf_confidence, llm_confidence, tuning) "
                    "VALUES ('old', :i, 0, 0, 0, false, '{}', '[]', 0, 0, false, '[]', '[]', "
                    ":t, :l, '{}')"
                ),
                {"i": idx, "t": tfidf, "l": llm},
            )
    command.upgrade(config, "0007")
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT idx, tfidf_verdict, llm_verdict, tfidf_null_n FROM latents ORDER BY idx"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (0, "no_null", None, None), (1, "below", "no_null", None), (2, None, None, None)
    ]  # fmt: skip
    command.downgrade(config, "0006")
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("latents")}
        items = {c["name"] for c in sa.inspect(conn).get_columns("study_items")}
    assert "tfidf_verdict" not in columns and "llm_null_p" not in columns
    assert "verdict" not in items and "null_p" not in items
    engine.dispose()
