"""Every query the backend runs. Routes call these and never build SQL themselves.

Functions return ORM rows (or ``None`` when a row does not exist) so the caller decides how to
answer a miss: the web layer turns ``None`` into a 404 that names what was asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from core.reports import VERDICT_VERIFIED
from core.store.schema import Concept, Example, Item, Latent, RecordedCase, Run, User

LatentSort = Literal["confidence", "llm_confidence", "density", "id"]
SortOrder = Literal["asc", "desc"]
ConceptMethod = Literal["tfidf", "llm"]

_SORT_COLUMNS = {
    "confidence": Latent.tfidf_confidence,
    "llm_confidence": Latent.llm_confidence,
    "density": Latent.density,
    "id": Latent.idx,
}
_CONCEPT_COLUMNS = {
    "tfidf": (Latent.tfidf_concept, Latent.tfidf_confidence),
    "llm": (Latent.llm_concept, Latent.llm_confidence),
}
# The verdict of each method's shown concept (core.reports.verdict).
_VERDICT_COLUMNS = {"tfidf": Latent.tfidf_verdict, "llm": Latent.llm_verdict}
ROLE_ORDER = ("construction", "verification", "random")


def _check(value: object, allowed: Iterable[object], what: str) -> None:
    options = tuple(allowed)
    if value not in options:
        expected = ", ".join(map(str, options))
        raise ValueError(f"unknown {what} {value!r}; expected one of {expected}")


# --- runs ------------------------------------------------------------------------------------


def list_runs(session: Session) -> list[Run]:
    """Published runs, newest first."""
    return list(session.scalars(select(Run).order_by(Run.created_at.desc(), Run.id)))


def get_run(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id)


def run_ids(session: Session) -> list[str]:
    """All run ids (for 'unknown run' messages that tell the user what does exist)."""
    return list(session.scalars(select(Run.id).order_by(Run.id)))


def confidence_values(session: Session, run_id: str) -> dict[str, list[float]]:
    """Best verified confidence of every latent, per method (paper Figure 2's distribution)."""
    rows = session.execute(
        select(Latent.tfidf_confidence, Latent.llm_confidence).where(Latent.run_id == run_id)
    ).all()
    return {
        "tfidf": [r.tfidf_confidence for r in rows if r.tfidf_confidence is not None],
        "llm": [r.llm_confidence for r in rows if r.llm_confidence is not None],
    }


# --- latents ---------------------------------------------------------------------------------


def list_latents(
    session: Session,
    run_id: str,
    *,
    sort: LatentSort = "confidence",
    order: SortOrder = "desc",
    q: str | None = None,
    min_confidence: float | None = None,
    method: ConceptMethod | None = None,
    verified: bool | None = None,
    page: int = 1,
    per_page: int = 50,
    also: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[Latent], int]:
    """One page of a run's latents and the number matching the filters (for the pager).

    ``method`` alone keeps the latents that have a concept by that method; ``also``: further
    conditions (e.g. ``core.store.browse.confound_where``).

    ``q`` is a case-insensitive substring of the concept text, ``min_confidence`` a floor on
    the confidence and ``verified`` the verdict (True: "verified", docs/method.md §1.11; False:
    any other); all look at ``method``'s concept, or at either method when it is ``None``.
    Latents without a confidence sort last in both orders: an unverified latent is never "the
    most" or "the least" confident. Ties break on the latent id so pages are stable.
    """
    _check(sort, get_args(LatentSort), "sort")
    _check(order, get_args(SortOrder), "order")
    if method is not None:
        _check(method, get_args(ConceptMethod), "concept method")
    if page < 1 or per_page < 1:
        raise ValueError(f"page ({page}) and per_page ({per_page}) must be >= 1")

    methods = [method] if method is not None else list(_CONCEPT_COLUMNS)
    where: list[ColumnElement[bool]] = [Latent.run_id == run_id]
    if q:
        needle = q.strip().lower()
        where.append(
            or_(
                *(
                    func.lower(_CONCEPT_COLUMNS[m][0]).contains(needle, autoescape=True)
                    for m in methods
                )
            )
        )
    if min_confidence is not None:
        where.append(or_(*(_CONCEPT_COLUMNS[m][1] >= min_confidence for m in methods)))
    if verified is not None:
        is_ok = or_(*(func.coalesce(_VERDICT_COLUMNS[m], "") == VERDICT_VERIFIED for m in methods))
        where.append(is_ok if verified else ~is_ok)
    if method is not None:
        where.append(_CONCEPT_COLUMNS[method][0].is_not(None))
    condition = and_(*where, *also)

    total = session.scalar(select(func.count()).select_from(Latent).where(condition)) or 0
    column = _SORT_COLUMNS[sort]
    ordering = column.desc() if order == "desc" else column.asc()
    rows = session.scalars(
        select(Latent)
        .where(condition)
        .order_by(column.is_(None), ordering, Latent.idx)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), total


def get_latent(session: Session, run_id: str, idx: int) -> Latent | None:
    return session.get(Latent, (run_id, idx))


def latents_by_idx(session: Session, run_id: str, idxs: Iterable[int]) -> dict[int, Latent]:
    """Latents by index, in one query (the user page's sliders); absent indices are left out."""
    wanted = sorted({int(i) for i in idxs})
    if not wanted:
        return {}
    rows = session.scalars(select(Latent).where(Latent.run_id == run_id, Latent.idx.in_(wanted)))
    return {latent.idx: latent for latent in rows}


def latent_examples(session: Session, run_id: str, idx: int) -> list[Example]:
    """A latent's example cases, strongest activation first (group them by ``role``)."""
    return list(
        session.scalars(
            select(Example)
            .where(Example.run_id == run_id, Example.latent_idx == idx)
            .order_by(Example.activation.desc(), Example.id)
        )
    )


def latent_concepts(session: Session, run_id: str, idx: int) -> list[Concept]:
    """Every explanation of a latent, newest first: re-explanations keep their history."""
    return list(
        session.scalars(
            select(Concept)
            .where(Concept.run_id == run_id, Concept.latent_idx == idx)
            .order_by(Concept.created_at.desc(), Concept.id.desc())
        )
    )


def kept_concepts_beyond(session: Session, run_id: str, n_latents: int) -> list[Concept]:
    """Concepts a republish keeps (written from the web, or by the LLM) whose latent index is not
    below ``n_latents``: a new SAE that small has no latent for them (``writes.publish_run``
    refuses to drop them unless told)."""
    return list(
        session.scalars(
            select(Concept)
            .where(
                Concept.run_id == run_id,
                or_(Concept.source == "web", Concept.method == "llm"),
                Concept.latent_idx >= n_latents,
            )
            .order_by(Concept.latent_idx, Concept.id)
        )
    )


# --- items and users -------------------------------------------------------------------------


def get_item(session: Session, run_id: str, idx: int) -> Item | None:
    return session.get(Item, (run_id, idx))


def items_by_idx(session: Session, run_id: str, idxs: Iterable[int]) -> dict[int, Item]:
    """Items by index, in one query (titles for histories, predictions, promoted items)."""
    wanted = sorted({int(i) for i in idxs})
    if not wanted:
        return {}
    rows = session.scalars(select(Item).where(Item.run_id == run_id, Item.idx.in_(wanted)))
    return {item.idx: item for item in rows}


@dataclass(frozen=True)
class ItemLatent:
    """A latent that fires on cases whose top 10 contains the item."""

    latent_idx: int
    n_cases: int  # cases recommending the item (top 10) where the latent is active
    n_top1: int  # of those, cases where the item is the top-1
    mean_activation: float
    tfidf_concept: str | None
    tfidf_confidence: float | None
    llm_concept: str | None
    llm_confidence: float | None


@dataclass(frozen=True)
class ItemLatents:
    n_cases: int  # recorded cases with the item in their top 10
    n_top1: int  # recorded cases with the item as top-1
    latents: list[ItemLatent]  # most frequent first


def latents_for_item(session: Session, run_id: str, item_idx: int) -> ItemLatents:
    """Which latents are active when the model recommends ``item_idx`` (top-1 or top 10).

    The scan is over the run's recorded (test-side) cases and filters in Python: membership in a
    JSON list has no portable SQL between SQLite and Postgres, and a run records one case per
    test user (thousands of rows), so this stays in the tens of milliseconds.
    """
    counts: dict[int, list[float]] = {}
    top1_counts: dict[int, int] = {}
    n_cases = n_top1 = 0
    rows = session.execute(
        select(
            RecordedCase.latent_idx,
            RecordedCase.latent_val,
            RecordedCase.top_items,
            RecordedCase.top1_item,
        ).where(RecordedCase.run_id == run_id)
    )
    for latent_idx, latent_val, top_items, top1 in rows:
        is_top1 = top1 == item_idx
        if not is_top1 and item_idx not in top_items:
            continue
        n_cases += 1
        n_top1 += is_top1
        for latent, value in zip(latent_idx, latent_val, strict=True):
            if value > 0:
                counts.setdefault(latent, []).append(value)
                top1_counts[latent] = top1_counts.get(latent, 0) + is_top1
    latents = {
        lat.idx: lat
        for lat in session.scalars(
            select(Latent).where(Latent.run_id == run_id, Latent.idx.in_(list(counts)))
        )
    }
    hits = [
        ItemLatent(
            latent_idx=idx,
            n_cases=len(values),
            n_top1=top1_counts[idx],
            mean_activation=sum(values) / len(values),
            tfidf_concept=latents[idx].tfidf_concept if idx in latents else None,
            tfidf_confidence=latents[idx].tfidf_confidence if idx in latents else None,
            llm_concept=latents[idx].llm_concept if idx in latents else None,
            llm_confidence=latents[idx].llm_confidence if idx in latents else None,
        )
        for idx, values in counts.items()
    ]
    hits.sort(key=lambda h: (-h.n_cases, -h.mean_activation, h.latent_idx))
    return ItemLatents(n_cases=n_cases, n_top1=n_top1, latents=hits)


def get_user(session: Session, run_id: str, idx: int) -> User | None:
    return session.get(User, (run_id, idx))


# --- steering ----------------------------------------------------------------------------------


class ItemText(NamedTuple):
    idx: int
    title: str
    text: str  # the metadata text TF-IDF tokenised (title | genres | tags | text)


class UserSplit(NamedTuple):
    idx: int
    history: list[int]  # train part, chronological
    dev_item: int
    test_item: int
    side: str  # train / dev / test side of the split


@dataclass(frozen=True)
class SteeringRows:
    """Everything steering needs from a run's rows, as plain data (no ORM objects)."""

    items: list[ItemText]  # one per item row, in no particular order
    users: list[UserSplit]  # one per user row, in no particular order
    tfidf_concepts: list[tuple[int, str | None]]  # (latent idx, its TF-IDF concept)


def steering_rows(session: Session, run_id: str) -> SteeringRows:
    """The item texts, user splits and latent concepts of a run, in three queries.

    Columns are selected explicitly (no ORM objects) so a 100k-item catalog loads in about a
    second; the steering engine checks the indices against its arrays.
    """
    items = [
        ItemText(idx, title, text or "")
        for idx, title, text in session.execute(
            select(Item.idx, Item.title, Item.text).where(Item.run_id == run_id)
        )
    ]
    users = [
        UserSplit(idx, [int(i) for i in history], dev_item, test_item, side)
        for idx, history, dev_item, test_item, side in session.execute(
            select(User.idx, User.history, User.dev_item, User.test_item, User.side).where(
                User.run_id == run_id
            )
        )
    ]
    concepts = [
        (idx, concept)
        for idx, concept in session.execute(
            select(Latent.idx, Latent.tfidf_concept).where(Latent.run_id == run_id)
        )
    ]
    return SteeringRows(items=items, users=users, tfidf_concepts=concepts)


# --- lenses (docs/method.md §6) -----------------------------------------------------------------


class LatentMapRow(NamedTuple):
    idx: int
    map_x: float | None
    map_y: float | None
    density: float
    dead: bool
    tfidf_concept: str | None
    tfidf_confidence: float | None
    llm_concept: str | None
    llm_confidence: float | None


def latent_map_rows(session: Session, run_id: str) -> list[LatentMapRow]:
    """Every latent's map coordinates, density and best concepts, by index (the latent map)."""
    columns = [getattr(Latent, name) for name in LatentMapRow._fields]
    rows = session.execute(select(*columns).where(Latent.run_id == run_id).order_by(Latent.idx))
    return [LatentMapRow(*row) for row in rows]


def external_ids(session: Session, run_id: str, table: Literal["users", "items"]) -> list[str]:
    """The dataset's own id of every user (or item) of a run, by index (to align two runs)."""
    model = User if table == "users" else Item
    query = select(model.external_id).where(model.run_id == run_id).order_by(model.idx)
    return list(session.scalars(query))


def runs_on_dataset(session: Session, dataset: str, exclude: str) -> list[Run]:
    """Published runs on ``dataset`` other than ``exclude``, newest first."""
    query = select(Run).where(Run.dataset == dataset, Run.id != exclude)
    return list(session.scalars(query.order_by(Run.created_at.desc(), Run.id)))
