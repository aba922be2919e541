"""Verdicts: every concept's null is a test (docs/method.md §1.11).

A concept is verified when its confidence is >= 0.8 and the rank p-value (r + 1) / (n + 1) of
its permutation null is <= 0.05, which needs n >= 19 null draws. The latents table keeps, per
method, the shown concept's verdict and its null's p-value and size (the list's badge and its
``verified`` filter follow the verdict); a study item keeps the p-value, n and verdict its
annotators' concept had.

Rows written before: their nulls carry no rank p-value, so a confident concept gets "no_null"
(not verified) and a less confident one "below"; republishing the run computes the tests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_METHODS = ("tfidf", "llm")
# core.reports.VERIFIED_CONFIDENCE less its comparison tolerance
_CONFIDENT = 0.8 - 1e-9


def upgrade() -> None:
    with op.batch_alter_table("latents") as batch:
        for m in _METHODS:
            batch.add_column(sa.Column(f"{m}_verdict", sa.String(length=16), nullable=True))
            batch.add_column(sa.Column(f"{m}_null_p", sa.Float(), nullable=True))
            batch.add_column(sa.Column(f"{m}_null_n", sa.Integer(), nullable=True))
    with op.batch_alter_table("study_items") as batch:
        batch.add_column(sa.Column("null_p", sa.Float(), nullable=True))
        batch.add_column(sa.Column("null_n", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("verdict", sa.String(length=16), nullable=True))
    latents = sa.table(
        "latents",
        *(sa.column(f"{m}_confidence", sa.Float()) for m in _METHODS),
        *(sa.column(f"{m}_verdict", sa.String()) for m in _METHODS),
    )
    for m in _METHODS:
        confidence = latents.c[f"{m}_confidence"]
        op.execute(
            latents.update()
            .where(confidence.is_not(None))
            .values(
                {
                    f"{m}_verdict": sa.case(
                        (confidence >= _CONFIDENT, sa.literal("no_null")), else_=sa.literal("below")
                    )
                }
            )
        )
    items = sa.table(
        "study_items", sa.column("confidence", sa.Float()), sa.column("verdict", sa.String())
    )
    op.execute(
        items.update()
        .where(items.c.confidence.is_not(None))
        .values(
            verdict=sa.case(
                (items.c.confidence >= _CONFIDENT, sa.literal("no_null")), else_=sa.literal("below")
            )
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("study_items") as batch:
        for name in ("verdict", "null_n", "null_p"):
            batch.drop_column(name)
    with op.batch_alter_table("latents") as batch:
        for m in reversed(_METHODS):
            for name in (f"{m}_null_n", f"{m}_null_p", f"{m}_verdict"):
                batch.drop_column(name)
