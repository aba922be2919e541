"""Durable jobs: work the explorer asks for and a ``recsae worker`` process does (docs/jobs.md).

A job is one row of ``jobs``: queued → running → done | failed | cancelled. The explorer
enqueues (:func:`enqueue`: the account's quota and one job per latent checked in the same
transaction), a worker claims the oldest queued job (:func:`claim`: ``FOR UPDATE SKIP LOCKED``
on PostgreSQL, one ``UPDATE ... WHERE state = 'queued' AND id = (SELECT ...) RETURNING`` on
SQLite, whose writers queue on the database's one write lock), reports its stage and beats its
heart (:func:`beat`), and ends it (:func:`finish` saves the concept and marks the job done in one
transaction; :func:`fail`). A job whose heartbeat is older than the stale timeout (its worker
died) is queued again by the next worker that looks (:func:`requeue_stale`), and failed once it
has been claimed ``max_attempts`` times. Every end is conditional on the job still being this
worker's and running, so a job cancelled or taken over meanwhile is never saved twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    CursorResult,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.store.schema import NEVER_REUSE_IDS, Account, Base, Concept, Latent, Run

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
EXPLAIN = "explain"
QUOTA_WINDOW = timedelta(hours=1)
_ACTIVE_SQL = "state IN ('queued', 'running')"


def _now() -> datetime:
    return datetime.now(UTC)


def _changed(session: Session, statement: Any) -> int:
    """Rows an UPDATE changed."""
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


class Job(Base):
    """One durable job (docs/jobs.md). ``stage``, ``done`` and ``total`` are what the worker is
    doing (``core.llm.progress``: explain, verify 3 of 4, null 7 of 19, ...)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), default=EXPLAIN)
    run_id: Mapped[str] = mapped_column(String(64))
    latent: Mapped[int] = mapped_column(Integer)
    run_version: Mapped[int] = mapped_column(Integer)  # the version whose examples it explains
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )
    state: Mapped[str] = mapped_column(String(16), default=QUEUED)
    stage: Mapped[str] = mapped_column(String(16), default=QUEUED)
    done: Mapped[int] = mapped_column(Integer, default=0)  # k of n
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # worker id
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times claimed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed / was requeued
    concept_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the saved concept

    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="ck_jobs_state"
        ),
        # One job per latent at a time: a second enqueue while one is queued or running fails.
        Index(
            "uq_jobs_active_latent",
            "run_id",
            "latent",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
        Index("ix_jobs_state", "state", "id"),
        NEVER_REUSE_IDS,
    )


class JobExists(Exception):
    """The latent already has a queued or running job (``job_id``)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is already queued or running for this latent")
        self.job_id = job_id


class QuotaExceeded(Exception):
    """The account has had ``per_hour`` explanations within the hour; one frees up in
    ``retry_after_s``."""

    def __init__(self, per_hour: int, retry_after_s: float) -> None:
        super().__init__(f"{per_hour} explanations within the hour")
        self.per_hour = per_hour
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Claimed:
    """A job as its worker sees it once claimed."""

    id: int
    kind: str
    run_id: str
    latent: int
    run_version: int
    account_id: int | None
    attempts: int


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def enqueue(
    sessions: sessionmaker[Session],
    run_id: str,
    latent: int,
    account_id: int,
    per_hour: int,
) -> int:
    """Queue an explanation of ``latent`` for ``account_id``; returns the job's id.

    In one transaction that first takes the account row's write lock (so two enqueues of one
    account, in any process, count one after the other): the quota counts the account's web
    concepts of the last hour plus its queued and running jobs (:class:`QuotaExceeded`), and the
    partial unique index refuses a second active job for the latent (:class:`JobExists`).
    """
    now = _now()
    try:
        with sessions.begin() as session:
            # A no-op write: PostgreSQL locks the row, SQLite takes its one write lock.
            session.execute(
                update(Account).where(Account.id == account_id).values(role=Account.role)
            )
            if per_hour > 0:
                _check_quota(session, account_id, per_hour, now)
            version = session.scalar(select(Run.version).where(Run.id == run_id))
            if version is None:
                raise LookupError(f"there is no run {run_id!r}")
            active = _active_job(session, run_id, latent)
            if active is not None:
                raise JobExists(active)
            job = Job(
                kind=EXPLAIN, run_id=run_id, latent=latent, run_version=version,
                account_id=account_id, state=QUEUED, stage=QUEUED, created_at=now,
            )  # fmt: skip
            session.add(job)
            session.flush()
            return job.id
    except IntegrityError:  # another enqueue of this latent committed between our look and ours
        with sessions() as session:
            active = _active_job(session, run_id, latent)
        if active is None:
            raise
        raise JobExists(active) from None


def _active_job(session: Session, run_id: str, latent: int) -> int | None:
    return session.scalar(
        select(Job.id).where(Job.run_id == run_id, Job.latent == latent, Job.state.in_(ACTIVE))
    )


def _check_quota(session: Session, account_id: int, per_hour: int, now: datetime) -> None:
    since = now - QUOTA_WINDOW
    saved, oldest = session.execute(
        select(func.count(), func.min(Concept.created_at)).where(
            Concept.account_id == account_id,
            Concept.source == "web",
            Concept.created_at >= since,
        )
    ).one()
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.account_id == account_id, Job.state.in_(ACTIVE))
    )
    if saved + (active or 0) < per_hour:
        return
    first = _aware(oldest)
    # Saved ones free up an hour after they were saved; with only jobs in the way, one ends
    # within its budget: say a minute, and ask again.
    free_in = (first + QUOTA_WINDOW - now).total_seconds() if first is not None else 60.0
    raise QuotaExceeded(per_hour, max(1.0, free_in))


def claim(sessions: sessionmaker[Session], worker_id: str) -> Claimed | None:
    """The oldest queued job, now running and this worker's (None when none is queued).

    One statement: ``UPDATE jobs SET state = 'running', ... WHERE state = 'queued' AND id =
    (SELECT id ... ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...``. PostgreSQL skips
    rows another worker's claim holds; SQLite runs one writer at a time (the dialect drops the
    ``FOR UPDATE``), and the outer ``state = 'queued'`` makes a lost race claim nothing.
    """
    now = _now()
    oldest = (
        select(Job.id)
        .where(Job.state == QUEUED)
        .order_by(Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Job)
        .where(Job.state == QUEUED, Job.id == oldest)
        .values(
            state=RUNNING,
            stage="claimed",
            done=0,
            total=0,
            claimed_by=worker_id,
            claimed_at=now,
            heartbeat_at=now,
            attempts=Job.attempts + 1,
        )  # fmt: skip
        .returning(
            Job.id,
            Job.kind,
            Job.run_id,
            Job.latent,
            Job.run_version,
            Job.account_id,
            Job.attempts,
        )  # fmt: skip
        .execution_options(synchronize_session=False)
    )
    with sessions.begin() as session:
        row = session.execute(statement).first()
    return None if row is None else Claimed(*row)


def _mine(job_id: int, worker_id: str) -> Iterable[Any]:
    return (Job.id == job_id, Job.claimed_by == worker_id, Job.state == RUNNING)


def beat(
    sessions: sessionmaker[Session], job_id: int, worker_id: str, stage: str, done: int, total: int
) -> bool:
    """Record the job's stage and a heartbeat; False when it is no longer this worker's running
    job (cancelled, or re-queued after a stale heartbeat): the worker stops working on it."""
    with sessions.begin() as session:
        changed = _changed(
            session,
            update(Job)
            .where(*_mine(job_id, worker_id))
            .values(stage=stage, done=done, total=total, heartbeat_at=_now())
            .execution_options(synchronize_session=False),
        )
    return bool(changed)


def finish(
    sessions: sessionmaker[Session], job_id: int, worker_id: str, row: dict[str, Any]
) -> int | None:
    """Save the concept ``row`` and mark the job done, in one transaction; the concept's id, or
    None (nothing saved) when the job is no longer this worker's running job.

    Raises LookupError when the run was republished without the latent (nothing saved)."""
    from core.store.writes import refresh_latent_summary  # writes imports this package

    run_id, idx = row["run_id"], row["latent_idx"]
    with sessions.begin() as session:
        mine = _changed(
            session,
            update(Job)
            .where(*_mine(job_id, worker_id))
            .values(stage="save", heartbeat_at=_now())
            .execution_options(synchronize_session=False),
        )
        if not mine:
            return None
        lock = select(Latent.idx).where(Latent.run_id == run_id, Latent.idx == idx)
        if session.scalar(lock.with_for_update()) is None:
            raise LookupError(f"run {run_id!r} has no latent {idx}")
        concept = Concept(**{"source": "web", **row})
        session.add(concept)
        session.flush()
        refresh_latent_summary(session, run_id, idx)
        _changed(
            session,
            update(Job)
            .where(Job.id == job_id)
            .values(state=DONE, stage=DONE, concept_id=concept.id, finished_at=_now())
            .execution_options(synchronize_session=False),
        )
        return concept.id


def fail(sessions: sessionmaker[Session], job_id: int, worker_id: str, reason: str) -> bool:
    """Mark this worker's running job failed with ``reason`` (a sentence a user can act on)."""
    with sessions.begin() as session:
        changed = _changed(
            session,
            update(Job)
            .where(*_mine(job_id, worker_id))
            .values(state=FAILED, error=reason, finished_at=_now())
            .execution_options(synchronize_session=False),
        )
    return bool(changed)


def release(sessions: sessionmaker[Session], job_id: int, worker_id: str) -> bool:
    """Give this worker's running job back to the queue (its worker is being stopped): the
    next worker claims it at once, and this claim does not count as an attempt."""
    with sessions.begin() as session:
        changed = _changed(
            session,
            update(Job)
            .where(*_mine(job_id, worker_id))
            .values(
                state=QUEUED,
                stage=QUEUED,
                done=0,
                total=0,
                claimed_by=None,
                attempts=Job.attempts - 1,
                error="its worker was stopped; re-queued",
            )  # fmt: skip
            .execution_options(synchronize_session=False),
        )
    return bool(changed)


def cancel(sessions: sessionmaker[Session], job_id: int) -> bool:
    """Cancel a queued or running job (its worker sees it at its next heartbeat and stops);
    False when it had already ended."""
    with sessions.begin() as session:
        changed = _changed(
            session,
            update(Job)
            .where(Job.id == job_id, Job.state.in_(ACTIVE))
            .values(state=CANCELLED, finished_at=_now())
            .execution_options(synchronize_session=False),
        )
    return bool(changed)


def requeue_stale(sessions: sessionmaker[Session], stale_s: float, max_attempts: int) -> int:
    """Running jobs whose heartbeat is older than ``stale_s`` (their worker died or hangs): queued
    again, or failed once claimed ``max_attempts`` times. Returns how many were touched."""
    now = _now()
    cutoff = now - timedelta(seconds=stale_s)
    stale = (Job.state == RUNNING, Job.heartbeat_at < cutoff)
    with sessions.begin() as session:
        failed = _changed(
            session,
            update(Job)
            .where(*stale, Job.attempts >= max_attempts)
            .values(
                state=FAILED,
                finished_at=now,
                error=(
                    f"its worker stopped answering {max_attempts} times (no heartbeat for "
                    f"{stale_s:g} s, RECSAE_JOB_STALE_S); nothing was saved"
                ),
            )
            .execution_options(synchronize_session=False),
        )
        requeued = _changed(
            session,
            update(Job)
            .where(*stale, Job.attempts < max_attempts)
            .values(
                state=QUEUED,
                stage=QUEUED,
                done=0,
                total=0,
                claimed_by=None,
                error=f"its worker stopped answering (no heartbeat for {stale_s:g} s); re-queued",
            )
            .execution_options(synchronize_session=False),
        )
    return int(failed) + int(requeued)


def get(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def latest_for_latent(session: Session, run_id: str, latent: int) -> Job | None:
    """The latent's newest job (any state): what its page shows."""
    return session.scalar(
        select(Job).where(Job.run_id == run_id, Job.latent == latent).order_by(Job.id.desc())
    )


def counts(session: Session) -> dict[str, int]:
    """Jobs per state (every state present, 0 when none)."""
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    return {state: 0 for state in STATES} | {state: int(n) for state, n in rows}


def times(job: Job) -> dict[str, datetime | None]:
    """The job's timestamps, each timezone-aware (UTC)."""
    return {
        "created_at": _aware(job.created_at),
        "claimed_at": _aware(job.claimed_at),
        "heartbeat_at": _aware(job.heartbeat_at),
        "finished_at": _aware(job.finished_at),
    }
