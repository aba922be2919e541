"""Writes. The worker publishes a run in one transaction: all of it is visible, or none of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from core.store.schema import Concept, Example, Item, Latent, RecordedCase, Run, User

_CHUNK = 5000


def _bulk(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(model), rows[start : start + _CHUNK])


def publish_run(
    sessions: sessionmaker[Session],
    run: dict[str, Any],
    items: list[dict[str, Any]],
    users: list[dict[str, Any]],
    latents: list[dict[str, Any]],
    examples: list[dict[str, Any]],
    concepts: list[dict[str, Any]],
    cases: list[dict[str, Any]],
) -> None:
    """Replace run ``run["id"]`` (if it exists) with the given rows, atomically.

    Rows are plain dicts keyed by column name; ``run_id`` is filled in here.
    """
    run_id = run["id"]
    with sessions.begin() as session:
        if session.scalar(select(Run.id).where(Run.id == run_id)) is not None:
            delete_run(session, run_id)
        session.add(Run(**{**run, "status": "ready"}))
        session.flush()
        for model, rows in (
            (Item, items),
            (User, users),
            (Latent, latents),
            (Example, examples),
            (Concept, concepts),
            (RecordedCase, cases),
        ):
            _bulk(session, model, [{**r, "run_id": run_id} for r in rows])


def delete_run(session: Session, run_id: str) -> None:
    # Explicit children-first deletes: SQLite only cascades with foreign_keys=ON, and we do not
    # want correctness to hinge on a pragma.
    for model in (Concept, Example, RecordedCase, Latent, User, Item):
        session.execute(delete(model).where(model.run_id == run_id))
    session.execute(delete(Run).where(Run.id == run_id))


def add_concept(sessions: sessionmaker[Session], row: dict[str, Any]) -> int:
    """Append one explanation (e.g. an LLM re-explanation) and refresh the latent's summary."""
    with sessions.begin() as session:
        concept = Concept(**row)
        session.add(concept)
        session.flush()
        latent = session.get(Latent, (row["run_id"], row["latent_idx"]))
        if latent is not None and row.get("confidence") is not None:
            field = "llm" if row["method"] == "llm" else "tfidf"
            best = getattr(latent, f"{field}_confidence")
            if best is None or row["confidence"] >= best:
                setattr(latent, f"{field}_confidence", row["confidence"])
                setattr(latent, f"{field}_concept", row["text"])
        return concept.id
