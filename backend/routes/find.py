"""Find anything: a run's users and items indexes (search, sort, pages), each row a link.

Paging clamps like the latent list: a page past the last shows the last, so a stale link or a
typed ``_page=999`` still shows rows and says which page they are.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend import urls
from backend.deps import TEXT_FILTER_MAX, Context, RunDep, SessionDep, page
from backend.errors import responses
from backend.report import run_summary
from core.store import browse, reads
from core.store.browse import ItemSort, UserSort
from core.store.reads import SortOrder

router = APIRouter(tags=["find"])

PageNo = Annotated[
    int, Query(alias="_page", ge=1, description="page number; past the last shows the last")
]
Size = Annotated[int, Query(alias="_size", ge=1, le=500, description="rows per page")]
Order = Annotated[SortOrder, Query(alias="_order")]

# Shown under the users table and in the JSON twin: how the NDCG column is computed.
NDCG_NOTE = (
    "NDCG@10 of the user's test item in the top 10 the model recorded for them at the test "
    "position (training history + dev item): 1 / log2(rank + 2) if it is there, else 0."
)


def _pager(total: int, size: int, page_no: int) -> tuple[int, int]:
    """(page shown, number of pages): a page past the last is the last."""
    pages = max(1, math.ceil(total / size))
    return min(page_no, pages), pages


def _clamped(asked: int, shown: int) -> dict[str, int] | None:
    """What the page says when it showed another page than the one asked for."""
    return None if asked == shown else {"asked": asked, "shown": shown}


@page(router, "/runs/{run_id}/users", "users.html", name="users", responses=responses(404))
def users_index(
    run: RunDep,
    session: SessionDep,
    q: Annotated[
        str | None,
        Query(max_length=TEXT_FILTER_MAX, description="a user id: internal (0-based) or external"),
    ] = None,
    sort: Annotated[UserSort, Query(alias="_sort")] = "activity",
    order: Order = "desc",
    page_no: PageNo = 1,
    size: Size = 50,
) -> Context:
    """A run's users: find one by id; sort by activity (history length), NDCG or id; paginated."""
    found = browse.list_users(session, run.id, q=q or None, sort=sort, order=order)
    asked = page_no
    page_no, pages = _pager(len(found), size, page_no)
    here = urls.users(run.id, q=q, _sort=sort, _order=order, _size=size)
    rows = found[(page_no - 1) * size : page_no * size]
    items = reads.items_by_idx(session, run.id, [r.test_item for r in rows])
    titles = {idx: item.title for idx, item in items.items()}
    return {
        "run": run_summary(run),
        "filters": {"q": q or "", "sort": sort, "order": order, "page": page_no, "size": size},
        "total": len(found),
        "pages": pages,
        "clamped": _clamped(asked, page_no),
        "ndcg_note": NDCG_NOTE,
        "users": [
            {
                "idx": r.idx,
                "external_id": r.external_id,
                "url": urls.user(run.id, r.idx),
                "n_history": r.n_history,
                "ndcg": r.ndcg,
                "test_item": {
                    "idx": r.test_item,
                    "title": titles.get(r.test_item, f"(unknown item {r.test_item})"),
                    "url": urls.item(run.id, r.test_item),
                },
            }
            for r in rows
        ],
        "links": urls.list_links(here, page_no, pages, sort, order, ("activity", "ndcg", "id")),
    }


@page(router, "/runs/{run_id}/items", "items.html", name="items", responses=responses(404))
def items_index(
    run: RunDep,
    session: SessionDep,
    q: Annotated[
        str | None,
        Query(max_length=TEXT_FILTER_MAX, description="substring of the title or text"),
    ] = None,
    sort: Annotated[ItemSort, Query(alias="_sort")] = "popularity",
    order: Order = "desc",
    page_no: PageNo = 1,
    size: Size = 50,
) -> Context:
    """A run's items: search their text; sort by popularity, title or id; paginated."""

    def fetch(number: int) -> tuple[list[Any], int]:
        return browse.list_items(
            session, run.id, q=q or None, sort=sort, order=order,
            offset=(number - 1) * size, limit=size,
        )  # fmt: skip

    # The offset the database sees stays within the data (as in the latent list).
    first = min(page_no, max(1, math.ceil(run.n_items / size)))
    rows, total = fetch(first)
    shown, pages = _pager(total, size, page_no)
    if shown != first:
        rows, total = fetch(shown)
    here = urls.items(run.id, q=q, _sort=sort, _order=order, _size=size)
    return {
        "run": run_summary(run),
        "filters": {"q": q or "", "sort": sort, "order": order, "page": shown, "size": size},
        "total": total,
        "pages": pages,
        "clamped": _clamped(page_no, shown),
        "items": [
            {
                "idx": i.idx,
                "external_id": i.external_id,
                "title": i.title,
                "genres": i.genres,
                "popularity": i.popularity,
                "url": urls.item(run.id, i.idx),
            }
            for i in rows
        ],
        "links": urls.list_links(here, shown, pages, sort, order, ("popularity", "title", "id")),
    }
