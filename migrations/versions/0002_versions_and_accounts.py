"""Run versions and accounts with login sessions.

``runs`` gains ``version`` and ``digests`` (the files of the published version, by sha256);
``concepts`` gains ``source`` (pipeline / web), ``run_version`` and ``account_id`` so concepts
written from the web survive a republish as history; ``accounts`` and ``login_sessions`` are new.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "login_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_login_sessions_account", "login_sessions", ["account_id"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("digests", sa.JSON(), nullable=True))
    with op.batch_alter_table("concepts") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=16), server_default="pipeline", nullable=False)
        )
        batch.add_column(sa.Column("run_version", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_concepts_account", "accounts", ["account_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("concepts") as batch:
        batch.drop_constraint("fk_concepts_account", type_="foreignkey")
        batch.drop_column("account_id")
        batch.drop_column("run_version")
        batch.drop_column("source")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("digests")
        batch.drop_column("version")
    op.drop_index("ix_login_sessions_account", table_name="login_sessions")
    op.drop_table("login_sessions")
    op.drop_table("accounts")
