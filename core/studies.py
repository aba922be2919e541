"""Human evaluation studies (docs/method.md §5): rating (this module), and the names of the
study's design re-exported.

A study is a seeded random sample of a run's latents that have a concept of the chosen
method(s) with confidence at least the minimum; each sampled (latent, concept) pair is a study
item, shown to the assigned annotators in one shuffled order. A rating is 1–4 (the scale of
docs/method.md §5) or a skip with a reason. The database holds one rating per (study,
annotator, latent, concept) — ``uq_ratings_one_per_key`` — and :func:`rate` writes through that
constraint (insert-or-nothing, then lock and update), so concurrent submissions on SQLite or
PostgreSQL neither lose nor duplicate a rating; every change is kept in ``rating_changes``.
A closed study is frozen: :func:`rate` refuses.

The study's design (sampling, annotators, open/closed) lives in core.study_design and its errors in
core.study_errors; both are re-exported here, so ``core.studies`` stays the one name to import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.types import DateTime, Integer, Text

from core.store.schema import Rating, RatingChange, Study, StudyAnnotator, StudyItem
from core.study_design import (
    DEFAULT_METHODS,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_SIZE,
    MAX_SIZE,
    METHODS,
    assign,
    create_study,
    is_assigned,
    set_status,
    unassign,
)
from core.study_errors import StudyClosed, StudyError, StudyNotFound

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_SIZE",
    "MAX_SIZE",
    "METHODS",
    "RATING_KEY",
    "SCALE",
    "SKIP_REASON_MAX",
    "RateResult",
    "StudyClosed",
    "StudyError",
    "StudyNotFound",
    "assign",
    "count_ratings",
    "create_study",
    "is_assigned",
    "rate",
    "rate_at",
    "set_status",
    "unassign",
]

SCALE = (1, 2, 3, 4)
SKIP_REASON_MAX = 500
RATING_KEY = ["study_id", "account_id", "latent_idx", "concept_id"]

try:  # POSIX; elsewhere SQLite's own lock alone serialises the writers
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RateResult:
    rating_id: int
    created: bool  # a new row (else an existing one, changed or not)
    changed: bool  # a change row was written


def _check_rating(value: int | None, skip_reason: str | None) -> str | None:
    if value is None:
        reason = (skip_reason or "").strip()
        if not reason:
            raise StudyError("a skip needs a reason (e.g. 'examples unclear')")
        if "\x00" in reason:  # PostgreSQL's text cannot hold it
            raise StudyError("a skip reason cannot contain NUL characters")
        if len(reason) > SKIP_REASON_MAX:
            raise StudyError(f"a skip reason has at most {SKIP_REASON_MAX} characters")
        return reason
    if value not in SCALE:
        raise StudyError(f"a rating is 1, 2, 3 or 4 (docs/method.md §5), not {value}")
    return None


def _engine(sessions: sessionmaker[Session]) -> Engine:
    """The engine behind ``sessions``: ratings are written with Core statements on one
    connection (no ORM unit of work: the write path is the hot one, benchmarks/annotate.py)."""
    engine: Engine = sessions.kw["bind"]
    return engine


@contextmanager
def _one_writer(sessions: sessionmaker[Session]) -> Iterator[None]:
    """On SQLite, rating writes queue on an OS file lock beside the database (``flock``: the
    kernel wakes the next writer when the lock is free) instead of on SQLite's own lock, whose
    busy handler polls with sleeps of up to 100 ms; with two server processes that polling let
    one process's writers starve the other's (seconds at p99, benchmarks/annotate.py).
    SQLite still enforces the same single writer; PostgreSQL needs no queue (row locks)."""
    url = sessions.kw["bind"].url
    if url.get_backend_name() != "sqlite" or not url.database or fcntl is None:
        yield
        return
    with open(f"{url.database}.ratings-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the rating write (the hot path: benchmarks/annotate.py) -----------------------------------
# Statements are built once, with bound parameters, so SQLAlchemy compiles each once per dialect
# (its statement cache) and a request only binds values.

_P = {
    "study_id": bindparam("study_id", type_=Integer),
    "position": bindparam("position", type_=Integer),
    "account_id": bindparam("account_id", type_=Integer),
}


def _insert_from_item(dialect: Any) -> Any:
    """INSERT the rating of the item at ``position`` unless its key exists (the database
    decides), taking the item's latent and concept in the same statement: its id, or nothing."""
    item = select(
        StudyItem.study_id,
        _P["account_id"],
        StudyItem.latent_idx,
        StudyItem.concept_id,
        bindparam("value", type_=Integer),
        bindparam("skip_reason", type_=Text),
        bindparam("now", type_=DateTime(timezone=True)),
    ).where(StudyItem.study_id == _P["study_id"], StudyItem.position == _P["position"])
    columns = [*RATING_KEY[:2], "latent_idx", "concept_id", "value", "skip_reason", "updated_at"]
    return (
        dialect.insert(Rating)
        .from_select(columns, item)
        .on_conflict_do_nothing(index_elements=RATING_KEY)
        .returning(Rating.id)
    )


_INSERT = {"sqlite": _insert_from_item(sqlite), "postgresql": _insert_from_item(postgresql)}
_ITEM, _LATER = aliased(StudyItem), aliased(StudyItem)
# The study's status (row share-locked until commit: closing waits for writes in flight, and a
# write after the close sees it closed), the assignment, the item and whether one follows it.
_STATE = (
    select(
        Study.status,
        StudyAnnotator.account_id,
        _ITEM.latent_idx,
        _ITEM.concept_id,
        select(_LATER.position)
        .where(_LATER.study_id == Study.id, _LATER.position == _P["position"] + 1)
        .exists(),
    )
    .outerjoin(
        StudyAnnotator,
        (StudyAnnotator.study_id == Study.id) & (StudyAnnotator.account_id == _P["account_id"]),
    )
    .outerjoin(_ITEM, (_ITEM.study_id == Study.id) & (_ITEM.position == _P["position"]))
    .where(Study.id == _P["study_id"])
    .with_for_update(read=True, of=Study)
)
_KEY = (
    (Rating.study_id == _P["study_id"])
    & (Rating.account_id == _P["account_id"])
    & (Rating.latent_idx == bindparam("latent_idx", type_=Integer))
    & (Rating.concept_id == bindparam("concept_id", type_=Integer))
)
_OLD = select(Rating.id, Rating.value, Rating.skip_reason).where(_KEY).with_for_update()
_UPDATE = (
    update(Rating)
    .where(Rating.id == bindparam("rating_id", type_=Integer))
    .values(
        value=bindparam("value", type_=Integer),
        skip_reason=bindparam("skip_reason", type_=Text),
        updated_at=bindparam("now", type_=DateTime(timezone=True)),
    )
)
_POSITION = select(StudyItem.position).where(
    StudyItem.study_id == _P["study_id"],
    StudyItem.latent_idx == bindparam("latent_idx", type_=Integer),
    StudyItem.concept_id == bindparam("concept_id", type_=Integer),
)


def _write(conn: Connection, at: dict[str, int], value: int | None, reason: str | None) -> tuple:
    """The rating's write, inside the caller's transaction (see :func:`rate`): three statements
    for a new rating, five for a change. ``at``: study_id, position, account_id.
    Returns (RateResult, whether an item follows)."""
    now = datetime.now(UTC)
    params = {**at, "value": value, "skip_reason": reason, "now": now}
    new_id = conn.scalar(_INSERT[conn.dialect.name], params)
    state = conn.execute(_STATE, at).first()
    study_id, account_id = at["study_id"], at["account_id"]
    if state is None or state[2] is None:
        raise StudyNotFound(f"study {study_id} has no item {at['position']}")
    status, assigned, latent_idx, concept_id, more = state
    if assigned is None:
        raise PermissionError(f"this account is not assigned to study {study_id}")
    if status != "open":
        raise StudyClosed(f"study {study_id} is closed: its ratings are frozen")
    old: tuple[int | None, str | None] = (None, None)
    rating_id = new_id
    if rating_id is None:  # there already: lock it, compare, update
        key = {**at, "latent_idx": latent_idx, "concept_id": concept_id}
        row = conn.execute(_OLD, key).one()
        rating_id, old = row[0], (row[1], row[2])
        if old == (value, reason):
            return RateResult(rating_id, False, False), bool(more)
        conn.execute(_UPDATE, {**params, "rating_id": rating_id})
    conn.execute(
        insert(RatingChange).values(
            rating_id=rating_id,
            account_id=account_id,
            changed_at=now,
            old_value=old[0],
            new_value=value,
            old_skip_reason=old[1],
            new_skip_reason=reason,
        )  # fmt: skip
    )
    return RateResult(rating_id, new_id is not None, True), bool(more)


def rate(
    sessions: sessionmaker[Session],
    study_id: int,
    account_id: int,
    latent_idx: int,
    concept_id: int,
    value: int | None,
    skip_reason: str | None = None,
) -> RateResult:
    """Record (or change) one annotator's rating of one study item (by latent and concept)."""
    with sessions() as session:
        key = {"study_id": study_id, "latent_idx": latent_idx, "concept_id": concept_id}
        position = session.scalar(_POSITION, key)
    if position is None:
        raise StudyNotFound(f"study {study_id} has no item for latent {latent_idx}")
    return rate_at(sessions, study_id, account_id, position, value, skip_reason)[0]


def rate_at(
    sessions: sessionmaker[Session],
    study_id: int,
    account_id: int,
    position: int,
    value: int | None,
    skip_reason: str | None = None,
) -> tuple[RateResult, bool]:
    """Record (or change) one annotator's rating of the study item at ``position``, in one
    transaction; also says whether an item follows it (what the annotation page posts).

    The INSERT comes first so that on SQLite the transaction holds the write lock before it
    reads; on PostgreSQL a concurrent insert of the same key waits for the first and then does
    nothing, and the row is locked (FOR UPDATE) before it is compared and updated. The item,
    the assignment and the study's status are checked after the insert, in the same transaction
    (a refusal rolls the insert back). Raises PermissionError (not assigned), StudyClosed,
    StudyNotFound (no such item) or StudyError (a value off the scale, a skip without reason)."""
    reason = _check_rating(value, skip_reason)
    at = {"study_id": study_id, "position": position, "account_id": account_id}
    # The connection first, then the queue: a writer at the head never waits for the pool.
    with _engine(sessions).connect() as conn, _one_writer(sessions), conn.begin():
        result: tuple[RateResult, bool] = _write(conn, at, value, reason)
        return result


def count_ratings(session: Session, study_id: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(Rating).filter_by(study_id=study_id)) or 0
    )
