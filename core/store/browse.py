"""The reads behind the users and items indexes (search, sort, pages): SQL stays in core/store.

Kept beside :mod:`core.store.reads` (which is at its size limit) with the same conventions.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from core.store.reads import ConceptMethod, SortOrder, _check
from core.store.schema import Item, Latent, RecordedCase, User

ItemSort = Literal["popularity", "title", "id"]
UserSort = Literal["activity", "ndcg", "id"]
Confound = Literal["any", "popularity", "activity", "none"]
# The output check of a latent's shown concept (docs/method.md §1.9); NULL: not checked.
Output = Literal["confirmed", "refuted", "too_few"]
_OUTPUT_COLUMNS = {"tfidf": Latent.tfidf_output, "llm": Latent.llm_output}
# A latent is flagged as confounded when |r| reaches this: its activation tracks the popularity
# of the items it promotes, or the length of the user's history, more than a concept would.
CONFOUND_MIN = 0.5
_ITEM_SORT = {"popularity": Item.popularity, "title": func.lower(Item.title), "id": Item.idx}


def list_items(
    session: Session,
    run_id: str,
    *,
    q: str | None = None,
    sort: ItemSort = "popularity",
    order: SortOrder = "desc",
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Item], int]:
    """A slice of a run's items whose title or text contains ``q`` (any case), and the count."""
    _check(sort, get_args(ItemSort), "sort")
    _check(order, get_args(SortOrder), "order")
    where: list[ColumnElement[bool]] = [Item.run_id == run_id]
    if q and q.strip():
        needle = q.strip().lower()
        where.append(
            or_(*(func.lower(c).contains(needle, autoescape=True) for c in (Item.title, Item.text)))
        )
    total = session.scalar(select(func.count()).select_from(Item).where(*where)) or 0
    column = _ITEM_SORT[sort]
    ordering = column.desc() if order == "desc" else column.asc()
    rows = session.scalars(
        select(Item).where(*where).order_by(ordering, Item.idx).offset(offset).limit(limit)
    )
    return list(rows), total


class UserRow(NamedTuple):
    idx: int
    external_id: str
    n_history: int  # training interactions (activity)
    test_item: int
    ndcg: float | None  # NDCG@10 of test_item in the recorded top 10; None: no recorded case


def list_users(
    session: Session,
    run_id: str,
    *,
    q: str | None = None,
    sort: UserSort = "activity",
    order: SortOrder = "desc",
) -> list[UserRow]:
    """A run's users (``q``: an internal index or an external id, exactly), sorted; ties by index.

    The NDCG is of the user's test item in the top 10 the model recorded at the test position
    (the ``cases`` row: history + dev item), 1 / log2(rank + 2) when there, else 0 — the
    per-case NDCG of docs/method.md §1.3. It is computed here, so the whole run is read.
    """
    _check(sort, get_args(UserSort), "sort")
    _check(order, get_args(SortOrder), "order")
    query = select(
        User.idx, User.external_id, func.json_array_length(User.history), User.test_item,
        RecordedCase.top_items,
    ).outerjoin(
        RecordedCase, and_(RecordedCase.run_id == User.run_id, RecordedCase.user_idx == User.idx)
    ).where(User.run_id == run_id)  # fmt: skip
    if q and q.strip():
        needle = q.strip()
        by_idx = [User.idx == int(needle)] if needle.isdigit() and len(needle) < 10 else []
        query = query.where(or_(User.external_id == needle, *by_idx))
    rows = [
        UserRow(idx, ext, int(n or 0), test, None if top is None else _ndcg(test, top))
        for idx, ext, n, test, top in session.execute(query)
    ]

    def key(r: UserRow) -> float:
        value = {"activity": r.n_history, "ndcg": r.ndcg, "id": r.idx}[sort]
        return -1.0 if value is None else float(value)

    rows.sort(key=lambda r: r.idx)
    rows.sort(key=key, reverse=order == "desc")
    if sort == "ndcg":  # users without a recorded case last in both orders
        rows = [r for r in rows if r.ndcg is not None] + [r for r in rows if r.ndcg is None]
    return rows


def _ndcg(item: int, top: list[Any]) -> float:
    for rank, candidate in enumerate(top[:10]):
        if int(candidate) == item:
            return 1.0 / math.log2(rank + 2)
    return 0.0


def confound_where(kind: Confound) -> ColumnElement[bool]:
    """The latents ``kind`` keeps (for ``reads.list_latents(also=...)``).

    ``popularity`` / ``activity``: that correlation's magnitude is at least :data:`CONFOUND_MIN`;
    ``any``: either is; ``none``: both were computed and neither is. A NULL correlation (not
    computed) is never flagged, so it is in none of the four.
    """
    _check(kind, get_args(Confound), "confound")
    strong = {
        "popularity": func.abs(Latent.popularity_corr) >= CONFOUND_MIN,
        "activity": func.abs(Latent.activity_corr) >= CONFOUND_MIN,
    }
    if kind == "none":
        return and_(
            func.abs(Latent.popularity_corr) < CONFOUND_MIN,
            func.abs(Latent.activity_corr) < CONFOUND_MIN,
        )
    if kind == "any":
        return or_(*strong.values())
    return strong[kind]


def confound_flags(popularity: float | None, activity: float | None) -> list[str]:
    """Which correlations are strong enough to flag (none when not computed)."""
    pairs = (("popularity", popularity), ("activity", activity))
    return [name for name, r in pairs if r is not None and abs(r) >= CONFOUND_MIN]


def output_where(kind: Output, method: ConceptMethod | None = None) -> ColumnElement[bool]:
    """The latents whose shown concept's output check is ``kind`` (for
    ``reads.list_latents(also=...)``): ``method``'s concept, or either method's when None. A
    latent not checked (NULL) is in none of the three."""
    _check(kind, get_args(Output), "output")
    methods = [method] if method is not None else list(_OUTPUT_COLUMNS)
    return or_(*(_OUTPUT_COLUMNS[m] == kind for m in methods))


def search_by_concept(
    session: Session, run_id: str, q: str, limit: int = 20
) -> tuple[list[Latent], int]:
    """Latents whose TF-IDF or LLM concept contains ``q`` (any case), those confirmed on output
    first (docs/method.md §1.9: steering them moves their concept), then too few users to tell,
    refuted and not checked; within each, the most confident TF-IDF concept first, ties by id.
    The count is of every match. The user page's "add a latent by concept" reads it."""
    needle = q.strip().lower()
    where = and_(
        Latent.run_id == run_id,
        or_(
            *(
                func.lower(column).contains(needle, autoescape=True)
                for column in (Latent.tfidf_concept, Latent.llm_concept)
            )
        ),
    )
    outputs = list(_OUTPUT_COLUMNS.values())
    rank = case(
        (or_(*(c == "confirmed" for c in outputs)), 0),
        (or_(*(c == "too_few" for c in outputs)), 1),
        (or_(*(c == "refuted" for c in outputs)), 2),
        else_=3,
    )
    total = session.scalar(select(func.count()).select_from(Latent).where(where)) or 0
    rows = session.scalars(
        select(Latent)
        .where(where)
        .order_by(
            rank,
            Latent.tfidf_confidence.is_(None),
            Latent.tfidf_confidence.desc(),
            Latent.idx,
        )
        .limit(limit)
    )
    return list(rows), total
