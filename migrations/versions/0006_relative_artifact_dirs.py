"""Relocatable data directories: ``runs.artifact_dir`` relative to the data directory.

Publishing now stores ``runs/<run id>/versions/<n>`` (``core.versions.stored_dir``) and the
explorer resolves it against the data directory it serves, so a copied or moved data directory
serves its own files (docs/architecture.md, run versions). This converts the absolute paths
written before: a path ending in ``/runs/<the row's id>/versions/<n>`` (or ``/runs/<id>``, a run
published before versions) keeps that tail from ``runs/`` on. Any other path is left as it is;
readers still take an absolute path as it is.

Downgrading turns the relative paths back into absolute ones, which needs the data directory:
``alembic -x data_dir=/path/to/var downgrade 0005`` (refused without it when there is any).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUNS = sa.table("runs", sa.column("id", sa.Text), sa.column("artifact_dir", sa.Text))


def relative_dir(run_id: str, stored: str) -> str | None:
    """``runs/<run id>[/versions/<n>]`` for an absolute path ending so, else None (kept)."""
    if not stored.startswith("/"):
        return None
    tail = rf"runs/{re.escape(run_id)}(?:/versions/\d+)?"
    match = re.fullmatch(rf"/(?:.*/)?({tail})/?", stored)
    return match.group(1) if match else None


def upgrade() -> None:
    bind = op.get_bind()
    for run_id, stored in bind.execute(sa.select(_RUNS.c.id, _RUNS.c.artifact_dir)).all():
        relative = relative_dir(run_id, stored)
        if relative is not None:
            bind.execute(_RUNS.update().where(_RUNS.c.id == run_id).values(artifact_dir=relative))


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_RUNS.c.id, _RUNS.c.artifact_dir)).all()
    relative = [(run_id, stored) for run_id, stored in rows if not stored.startswith("/")]
    if not relative:
        return
    data_dir = context.get_x_argument(as_dictionary=True).get("data_dir")
    if not data_dir or not data_dir.startswith("/"):
        raise RuntimeError(
            f"{len(relative)} runs store artifact_dir relative to the data directory; before "
            "0006 it was absolute: downgrade with alembic -x data_dir=/absolute/path/to/var"
        )
    for run_id, stored in relative:
        absolute = str(PurePosixPath(data_dir) / stored)
        bind.execute(_RUNS.update().where(_RUNS.c.id == run_id).values(artifact_dir=absolute))
