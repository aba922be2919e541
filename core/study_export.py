"""Deleting a study: an admin's explicit action, which exports it first (docs/architecture.md,
human work). Nothing else deletes what people wrote."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.store.schema import (
    Account,
    Invite,
    Rating,
    RatingChange,
    Study,
    StudyAnnotator,
    StudyItem,
)
from core.studies import StudyNotFound


def _jsonable(row: Any) -> dict[str, Any]:
    """A row's columns as JSON values (times as ISO strings)."""
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def export_study(session: Session, study_id: int) -> dict[str, Any]:
    """Everything people wrote for a study, as JSON: the study, its items (with what raters saw),
    its annotators, every rating and every change of one, and the invites tied to it."""
    study = session.get(Study, study_id)
    if study is None:
        raise StudyNotFound(f"no study {study_id}")
    names: dict[int, str] = {i: n for i, n in session.execute(select(Account.id, Account.username))}
    ratings = list(session.scalars(select(Rating).filter_by(study_id=study_id).order_by(Rating.id)))
    changes = session.scalars(
        select(RatingChange)
        .where(RatingChange.rating_id.in_([r.id for r in ratings]))
        .order_by(RatingChange.id)
    )
    invites = session.scalars(select(Invite).filter_by(study_id=study_id))
    return {
        "format": "recsae-study-export/1",
        "exported_at": datetime.now(UTC).isoformat(),
        "study": _jsonable(study),
        "items": [_jsonable(i) for i in session.scalars(
            select(StudyItem).filter_by(study_id=study_id).order_by(StudyItem.position)
        )],
        "annotators": [
            names.get(a.account_id) for a in session.scalars(
                select(StudyAnnotator).filter_by(study_id=study_id)
            )
        ],
        "ratings": [{**_jsonable(r), "annotator": names.get(r.account_id)} for r in ratings],
        "rating_changes": [_jsonable(c) for c in changes],
        "invites": [
            {k: v for k, v in _jsonable(i).items() if k != "token_hash"} for i in invites
        ],
    }  # fmt: skip


def delete_study(sessions: sessionmaker[Session], study_id: int, export_dir: Path) -> Path:
    """Export the study to ``export_dir`` (a new JSON file, written whole before anything is
    deleted), then delete it with its items, assignments, ratings and their history in one
    transaction; invites tied to it stay, without the study. Returns the export's path."""
    with sessions.begin() as session:
        export = export_study(session, study_id)
        export_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = export_dir / f"study-{study_id}-{stamp}.json"
        partial = path.with_suffix(".json.partial")
        with open(partial, "w", encoding="utf-8") as fh:
            json.dump(export, fh, indent=1, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
        rating_ids = select(Rating.id).where(Rating.study_id == study_id).scalar_subquery()
        session.execute(delete(RatingChange).where(RatingChange.rating_id.in_(rating_ids)))
        session.execute(delete(Rating).where(Rating.study_id == study_id))
        session.execute(delete(StudyItem).where(StudyItem.study_id == study_id))
        session.execute(delete(StudyAnnotator).where(StudyAnnotator.study_id == study_id))
        session.execute(update(Invite).where(Invite.study_id == study_id).values(study_id=None))
        session.execute(delete(Study).where(Study.id == study_id))
    return path
