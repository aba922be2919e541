"""Human work outlives every run version: no cascade from runs to studies, studies record the
version they sampled and their items the examples raters saw, invites outlive a deleted study, and
SQLite never hands out an id twice (AUTOINCREMENT) for the tables people write to.

Existing rows are kept. Every study that exists when this runs was sampled from its run's current
version (until now a republish deleted the run's studies), so ``run_version`` is filled with it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names for SQLite's unnamed foreign keys, so batch mode can drop them (PostgreSQL's are named
# <table>_<column>_fkey already, and looked up below).
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_AUTOINCREMENT_TABLES = ("accounts", "concepts", "ratings", "rating_changes")


def _fk_name(table: str, column: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return _NAMING["fk"] % {
            "table_name": table, "column_0_name": column,
            "referred_table_name": {"run_id": "runs", "study_id": "studies"}[column],
        }  # fmt: skip
    for fk in sa.inspect(op.get_bind()).get_foreign_keys(table):
        if fk["constrained_columns"] == [column]:
            return str(fk["name"])
    raise RuntimeError(f"no foreign key on {table}.{column}")


def _batch(table: str) -> object:
    """A batch that, on SQLite, rebuilds the table with AUTOINCREMENT (elsewhere: plain ALTERs)."""
    return op.batch_alter_table(
        table, naming_convention=_NAMING, table_kwargs={"sqlite_autoincrement": True},
        recreate="always" if op.get_bind().dialect.name == "sqlite" else "auto",
    )  # fmt: skip


def upgrade() -> None:
    run_fk, invite_fk = _fk_name("studies", "run_id"), _fk_name("invites", "study_id")
    with _batch("studies") as batch:  # type: ignore[attr-defined]
        batch.add_column(sa.Column("run_version", sa.Integer(), nullable=True))
        batch.drop_constraint(run_fk, type_="foreignkey")
        batch.create_foreign_key("fk_studies_run_id_runs", "runs", ["run_id"], ["id"])
    op.execute(
        "UPDATE studies SET run_version = (SELECT runs.version FROM runs WHERE runs.id = "
        "studies.run_id)"
    )
    with op.batch_alter_table("study_items") as batch:
        batch.add_column(sa.Column("shown", sa.JSON(), nullable=True))
    with op.batch_alter_table("invites", naming_convention=_NAMING) as batch:
        batch.drop_constraint(invite_fk, type_="foreignkey")
        batch.create_foreign_key(
            "fk_invites_study_id_studies", "studies", ["study_id"], ["id"], ondelete="SET NULL"
        )
    for table in _AUTOINCREMENT_TABLES:
        if op.get_bind().dialect.name == "sqlite":
            with _batch(table):
                pass


def downgrade() -> None:
    with op.batch_alter_table("invites", naming_convention=_NAMING) as batch:
        batch.drop_constraint("fk_invites_study_id_studies", type_="foreignkey")
        batch.create_foreign_key(
            "fk_invites_study_id_studies", "studies", ["study_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("study_items") as batch:
        batch.drop_column("shown")
    with op.batch_alter_table("studies", naming_convention=_NAMING) as batch:
        batch.drop_constraint("fk_studies_run_id_runs", type_="foreignkey")
        batch.create_foreign_key(
            "fk_studies_run_id_runs", "runs", ["run_id"], ["id"], ondelete="CASCADE"
        )
        batch.drop_column("run_version")
