"""Output checks: does steering a latent move its concept's share in the top 10 (docs/method.md
§1.9, "Output check")?

Each concept keeps its check (``concepts.output``: verdict, mode, number of users, the shares
before / boosted / suppressed, both changes with their paired 95% intervals); the latents table
keeps, per method, the shown concept's output verdict (confirmed / refuted / too_few), which the
list's ``output`` filter and the user page's "add a latent by concept" ranking read.

Rows written before: NULL everywhere, read as "not checked"; republishing the run checks them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_METHODS = ("tfidf", "llm")


def upgrade() -> None:
    with op.batch_alter_table("latents") as batch:
        for m in _METHODS:
            batch.add_column(sa.Column(f"{m}_output", sa.String(length=16), nullable=True))
    with op.batch_alter_table("concepts") as batch:
        batch.add_column(sa.Column("output", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("concepts") as batch:
        batch.drop_column("output")
    with op.batch_alter_table("latents") as batch:
        for m in reversed(_METHODS):
            batch.drop_column(f"{m}_output")
