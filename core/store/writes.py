"""Writes. The worker publishes a run in one transaction: all of it is visible, or none of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
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
    """Append one explanation (an LLM re-explanation from the explorer) and refresh the latent's
    summary; returns the concept's id.

    Concurrent writers for one latent queue on the latent row's lock (``SELECT ... FOR UPDATE`` on
    PostgreSQL; SQLite serialises writers itself) and derive the summary from the concepts table
    after their insert, so the last to commit counts every row. A row without ``run_version``
    describes the run's current version; without ``source`` it was written from the web.
    """
    run_id, idx = row["run_id"], row["latent_idx"]
    with sessions.begin() as session:
        locked = session.scalar(
            select(Latent.idx).where(Latent.run_id == run_id, Latent.idx == idx).with_for_update()
        )
        if locked is None:
            raise LookupError(f"run {run_id!r} has no latent {idx}")
        version = session.scalar(select(Run.version).where(Run.id == run_id))
        concept = Concept(**{"source": "web", "run_version": version, **row})
        session.add(concept)
        session.flush()
        refresh_latent_summary(session, run_id, idx)
        return concept.id


def refresh_latent_summary(session: Session, run_id: str, latent_idx: int) -> None:
    """Set the latent's ``tfidf_*`` / ``llm_*`` summary columns from its concepts.

    Only concepts of the run's current version count (older ones are history). Per method: the
    best confidence (a tie goes to the newest) and its text; with no verified concept, the newest
    concept's text and no confidence; with none at all, nothing. Call it in the writing
    transaction, holding the latent row's lock (as :func:`add_concept` does).
    """
    version = select(Run.version).where(Run.id == run_id).scalar_subquery()
    values: dict[str, Any] = {}
    for method in ("tfidf", "llm"):
        best = session.execute(
            select(Concept.confidence, Concept.text)
            .where(
                Concept.run_id == run_id,
                Concept.latent_idx == latent_idx,
                Concept.method == method,
                Concept.run_version == version,
            )
            .order_by(Concept.confidence.is_(None), Concept.confidence.desc(), Concept.id.desc())
            .limit(1)
        ).first()
        values[f"{method}_confidence"] = None if best is None else best.confidence
        values[f"{method}_concept"] = None if best is None else (best.text or None)
    session.execute(
        update(Latent).where(Latent.run_id == run_id, Latent.idx == latent_idx).values(**values)
    )
