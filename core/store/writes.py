"""Writes. The worker publishes a run in one transaction: all of it is visible, or none of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from core.reports import details_null_n, details_null_p_any, verdict
from core.rundir import SAE_FILES
from core.store.schema import (
    Concept,
    Example,
    Item,
    Latent,
    RecordedCase,
    Run,
    Study,
    StudyItem,
    User,
)
from core.study_reads import examples_shown

_CHUNK = 5000


def _bulk(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(model), rows[start : start + _CHUNK])


class HistoryWouldBeLost(ValueError):
    """Republishing would drop kept concepts (written from the web, or by the LLM) whose latents
    the new version no longer has; ``lost`` holds their rows."""

    def __init__(self, run_id: str, version: int, lost: list[dict[str, Any]]) -> None:
        self.lost = lost
        latents = sorted({c["latent_idx"] for c in lost})
        shown = ", ".join(map(str, latents[:10])) + (", ..." if len(latents) > 10 else "")
        super().__init__(
            f"publishing run {run_id!r} as version {version} would lose {len(lost)} concept(s) "
            f"written from the web or by the LLM: their latents ({shown}) do not exist in the "
            "new version"
        )


def _same_sae(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether two versions' SAE files are byte-identical (so their latents are the same)."""
    if not old or not new:
        return False
    return all(old.get(f) is not None and old.get(f) == new.get(f) for f in SAE_FILES)


def _concept_key(c: dict[str, Any]) -> tuple[Any, ...]:
    return (c["latent_idx"], c["method"], c["text"], c.get("model"), c.get("confidence"))


def _carry(session: Session, run_id: str, run: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """(new version, the kept concept rows to re-insert) of a run about to be replaced.

    Kept: every concept written from the web and every LLM concept. With the same SAE they
    describe the new version's latents (those of the previous version become current);
    otherwise they stay history with their version.
    """
    previous = session.execute(
        select(Run.version, Run.digests).where(Run.id == run_id).with_for_update()
    ).first()
    if previous is None:
        return int(run.get("version") or 1), []
    version = int(run.get("version") or previous.version + 1)
    # Lock the latent rows too: a concept written from the web meanwhile waits for us, then
    # finds its latent replaced (an error, never a silent loss).
    session.execute(select(Latent.idx).where(Latent.run_id == run_id).with_for_update()).all()
    kept = [
        dict(row)
        for row in session.execute(
            select(Concept.__table__).where(
                Concept.run_id == run_id, or_(Concept.source == "web", Concept.method == "llm")
            )
        ).mappings()
    ]
    if _same_sae(previous.digests, run.get("digests")):
        for c in kept:
            if c["run_version"] == previous.version:
                c["run_version"] = version
    return version, kept


def publish_run(
    sessions: sessionmaker[Session],
    run: dict[str, Any],
    items: list[dict[str, Any]],
    users: list[dict[str, Any]],
    latents: list[dict[str, Any]],
    examples: list[dict[str, Any]],
    concepts: list[dict[str, Any]],
    cases: list[dict[str, Any]],
    discard_history: Callable[[list[dict[str, Any]]], None] | None = None,
) -> int:
    """Replace run ``run["id"]`` (if it exists) with the given rows, atomically; returns the
    version published (``run["version"]``, else the previous one + 1, else 1).

    Rows are plain dicts keyed by column name; ``run_id`` (and each concept's ``run_version``) is
    filled in here. Concepts written from the web and earlier LLM concepts are carried into the
    new version (:func:`_carry`); when some would lose their latent, :class:`HistoryWouldBeLost`
    is raised unless ``discard_history`` is given, which is handed those rows before they go.
    """
    run_id = run["id"]
    new_idx = {int(r["idx"]) for r in latents}
    with sessions.begin() as session:
        version, kept = _carry(session, run_id, run)
        # A pipeline row this publish writes again (an LLM concept of the same SAE) stays the
        # kept one, with its id and time, instead of being written twice.
        again = {_concept_key(c) for c in kept if c["run_version"] == version}
        concepts = [c for c in concepts if _concept_key(c) not in again]
        lost = [c for c in kept if c["latent_idx"] not in new_idx]
        if lost:
            if discard_history is None:
                raise HistoryWouldBeLost(run_id, version, lost)
            discard_history(lost)
            kept = [c for c in kept if c["latent_idx"] in new_idx]
        _keep_what_raters_saw(session, run_id)
        _delete_run_rows(session, run_id)
        values = {**run, "version": version, "status": "ready"}
        # The run row is updated in place, never deleted: studies reference it and outlive
        # every version (docs/architecture.md, human work).
        if session.get(Run, run_id) is None:
            session.add(Run(**values))
        else:
            session.execute(update(Run).where(Run.id == run_id).values(**values))
        session.flush()
        # Kept concepts go in before the new ones, with their ids: SQLite hands out max(id) + 1,
        # so new rows never take an id a kept row still needs.
        for model, rows in (
            (Item, items),
            (User, users),
            (Latent, latents),
            (Concept, kept),
            (Example, examples),
            (Concept, [{"run_version": version, **c} for c in concepts]),
            (RecordedCase, cases),
        ):
            _bulk(session, model, [{**r, "run_id": run_id} for r in rows])
        for idx in sorted({c["latent_idx"] for c in kept if c["run_version"] == version}):
            refresh_latent_summary(session, run_id, idx)
    refresh_statistics(sessions)
    return version


# The tables a publish rewrites, tens of thousands of rows at once.
_PUBLISHED_TABLES = (Item, User, Latent, Concept, Example, RecordedCase)


def refresh_statistics(sessions: sessionmaker[Session]) -> None:
    """PostgreSQL: ANALYZE the tables a publish rewrote, so that the planner knows their new
    size at once instead of at autovacuum's next pass. Without it, a fresh run's 100,000 items
    were planned as about a hundred rows, and the latent page's lookup of its items by index
    read all of them (16-28 ms instead of 1.2 ms; docs/scaling.md, "Pages on PostgreSQL").
    SQLite's planner needs no statistics for these primary-key lookups."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        names = ", ".join(model.__tablename__ for model in _PUBLISHED_TABLES)
        session.execute(text(f"ANALYZE {names}"))


def _keep_what_raters_saw(session: Session, run_id: str) -> None:
    """Copy the examples into the run's study items that do not hold them yet (studies made
    before items kept them), while the version they sampled is still the one in the database."""
    version = session.scalar(select(Run.version).where(Run.id == run_id))
    missing = session.scalars(
        select(StudyItem)
        .join(Study, Study.id == StudyItem.study_id)
        .where(
            Study.run_id == run_id,
            StudyItem.shown.is_(None),
            or_(Study.run_version.is_(None), Study.run_version == version),
        )
    ).all()
    for item in missing:
        item.shown = examples_shown(session, run_id, item.latent_idx)
    session.flush()


def _delete_run_rows(session: Session, run_id: str) -> None:
    """Delete what a publish writes: every row below the run, never the run row or anything
    people wrote (studies, ratings; kept concepts are re-inserted by the caller)."""
    # Explicit children-first deletes: SQLite only cascades with foreign_keys=ON, and we do not
    # want correctness to hinge on a pragma.
    for model in (Concept, Example, RecordedCase, Latent, User, Item):
        session.execute(delete(model).where(model.run_id == run_id))


class RunHasStudies(ValueError):
    """Deleting the run would take human evaluation with it; ``study_ids`` names the studies."""

    def __init__(self, run_id: str, study_ids: list[int]) -> None:
        self.study_ids = study_ids
        super().__init__(
            f"run {run_id!r} has studies {', '.join(map(str, study_ids))}: their ratings would be "
            "lost. Export and delete each study first (`recsae studies delete N` exports it)"
        )


def delete_run(session: Session, run_id: str) -> None:
    """Delete a run and every row computed for it, its web explanations included; refuses
    (:class:`RunHasStudies`) while studies of it exist."""
    study_ids = list(session.scalars(select(Study.id).where(Study.run_id == run_id)))
    if study_ids:
        raise RunHasStudies(run_id, study_ids)
    _delete_run_rows(session, run_id)
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
    lock = select(Latent.idx).where(Latent.run_id == run_id, Latent.idx == idx).with_for_update()
    with sessions.begin() as session:
        # A republish deletes and re-inserts the row this waited for; PostgreSQL then skips it,
        # and a second look (a new snapshot) finds the new one.
        if session.scalar(lock) is None and session.scalar(lock) is None:
            raise LookupError(f"run {run_id!r} has no latent {idx}")
        version = session.scalar(select(Run.version).where(Run.id == run_id))
        concept = Concept(**{"source": "web", "run_version": version, **row})
        session.add(concept)
        session.flush()
        refresh_latent_summary(session, run_id, idx)
        return concept.id


def refresh_latent_summary(session: Session, run_id: str, latent_idx: int) -> None:
    """Set the latent's ``tfidf_*`` / ``llm_*`` summary columns from its concepts.

    Only concepts of the run's current version count (older ones are history), and never one
    that names nothing (status degenerate or unparseable: kept in the history with its reason,
    docs/method.md §1.11). Per method: the best confidence (a tie goes to the newest), its text,
    its verdict and its null's p-value and size (``core.reports.verdict``); with no confidence,
    the newest concept's text and no confidence; with none at all, nothing. Call it in the
    writing transaction, holding the latent row's lock (as :func:`add_concept` does).
    """
    version = select(Run.version).where(Run.id == run_id).scalar_subquery()
    values: dict[str, Any] = {}
    for method in ("tfidf", "llm"):
        best = session.execute(
            select(Concept.confidence, Concept.text, Concept.details, Concept.output)
            .where(
                Concept.run_id == run_id,
                Concept.latent_idx == latent_idx,
                Concept.method == method,
                Concept.run_version == version,
                Concept.status.not_in(NAMES_NOTHING),
            )
            .order_by(Concept.confidence.is_(None), Concept.confidence.desc(), Concept.id.desc())
            .limit(1)
        ).first()
        values |= summary_values(
            method,
            None if best is None else best.confidence,
            None if best is None else (best.text or None),
            None if best is None else best.details,
            None if best is None else best.output,
        )
    session.execute(
        update(Latent).where(Latent.run_id == run_id, Latent.idx == latent_idx).values(**values)
    )


# A concept's status when its label names nothing (core.llm.concepts): never a latent's summary.
NAMES_NOTHING = ("degenerate", "unparseable")


def summary_values(
    method: str,
    confidence: float | None,
    text: str | None,
    details: dict[str, Any] | None,
    output: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The latent row's summary columns of one method for the concept it shows (publish and
    :func:`refresh_latent_summary` alike): the null's p-value and n are kept whatever n is (shown
    beside the confidence); only ``verdict`` decides. ``output``: the concept's output check
    (docs/method.md §1.9), whose verdict the list filters on (None: not checked)."""
    scored = confidence is not None
    return {
        f"{method}_confidence": confidence,
        f"{method}_concept": text,
        f"{method}_verdict": verdict(confidence, details),
        f"{method}_null_p": details_null_p_any(details) if scored else None,
        f"{method}_null_n": details_null_n(details) if scored else None,
        f"{method}_output": (output or {}).get("verdict") if text else None,
    }
