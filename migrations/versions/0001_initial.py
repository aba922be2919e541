"""Initial schema: every table of core/store/schema.py as first written.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("recommender", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("artifact_dir", sa.Text(), nullable=False),
        sa.Column("n_users", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_latents", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("item_category", sa.String(length=64), nullable=False),
        sa.Column("item_name", sa.String(length=64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cases",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("user_idx", sa.Integer(), nullable=False),
        sa.Column("latent_idx", sa.JSON(), nullable=False),
        sa.Column("latent_val", sa.JSON(), nullable=False),
        sa.Column("top_items", sa.JSON(), nullable=False),
        sa.Column("top1_item", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "user_idx"),
    )
    op.create_index("ix_cases_top1", "cases", ["run_id", "top1_item"], unique=False)
    op.create_table(
        "items",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("genres", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("popularity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "idx"),
    )
    op.create_table(
        "latents",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("density", sa.Float(), nullable=False),
        sa.Column("max_activation", sa.Float(), nullable=False),
        sa.Column("mean_activation", sa.Float(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("histogram", sa.JSON(), nullable=False),
        sa.Column("level_edges", sa.JSON(), nullable=False),
        sa.Column("n_active_construction", sa.Integer(), nullable=False),
        sa.Column("n_active_verification", sa.Integer(), nullable=False),
        sa.Column("too_rare", sa.Boolean(), nullable=False),
        sa.Column("promoted", sa.JSON(), nullable=False),
        sa.Column("suppressed", sa.JSON(), nullable=False),
        sa.Column("tfidf_confidence", sa.Float(), nullable=True),
        sa.Column("tfidf_concept", sa.Text(), nullable=True),
        sa.Column("llm_confidence", sa.Float(), nullable=True),
        sa.Column("llm_concept", sa.Text(), nullable=True),
        sa.Column("tuning", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "idx"),
    )
    op.create_index("ix_latents_run_tfidf", "latents", ["run_id", "tfidf_confidence"], unique=False)
    op.create_table(
        "users",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("dev_item", sa.Integer(), nullable=False),
        sa.Column("test_item", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "idx"),
    )
    op.create_table(
        "concepts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("latent_idx", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "latent_idx"], ["latents.run_id", "latents.idx"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_concepts_latent", "concepts", ["run_id", "latent_idx"], unique=False)
    op.create_table(
        "examples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("latent_idx", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("user_idx", sa.Integer(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("predicted_item", sa.Integer(), nullable=False),
        sa.Column("activation", sa.Float(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "latent_idx"], ["latents.run_id", "latents.idx"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_examples_latent", "examples", ["run_id", "latent_idx"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_examples_latent", table_name="examples")
    op.drop_table("examples")
    op.drop_index("ix_concepts_latent", table_name="concepts")
    op.drop_table("concepts")
    op.drop_table("users")
    op.drop_index("ix_latents_run_tfidf", table_name="latents")
    op.drop_table("latents")
    op.drop_table("items")
    op.drop_index("ix_cases_top1", table_name="cases")
    op.drop_table("cases")
    op.drop_table("runs")
