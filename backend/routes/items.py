"""Items: an item's text and the latents that fire on the cases recommending it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend import urls
from backend.deps import Context, ItemDep, RunDep, SessionDep, page
from backend.errors import responses
from backend.report import run_summary
from backend.routes.find import PageNo, _pager
from core.store import reads

router = APIRouter(tags=["items"])


@page(router, "/runs/{run_id}/items/{idx}", "item.html", name="item", responses=responses(404))
def item_page(
    run: RunDep,
    item: ItemDep,
    session: SessionDep,
    page_no: PageNo = 1,
    size: Annotated[int, Query(alias="_size", ge=1, le=500, description="latents per page")] = 25,
) -> Context:
    """An item and the latents active on recorded cases whose top 10 contains it (paged)."""
    found = reads.latents_for_item(session, run.id, item.idx)
    asked = page_no
    page_no, pages = _pager(len(found.latents), size, page_no)
    shown = found.latents[(page_no - 1) * size : page_no * size]
    here = urls.with_params(urls.item(run.id, item.idx), _size=size)
    return {
        "run": run_summary(run),
        "item": {
            "idx": item.idx,
            "external_id": item.external_id,
            "title": item.title,
            "genres": item.genres,
            "tags": item.tags,
            "text": item.text,
            "popularity": item.popularity,
            "url": urls.item(run.id, item.idx),
        },
        "n_cases": found.n_cases,
        "n_top1": found.n_top1,
        "latents": [
            {
                "idx": hit.latent_idx,
                "url": urls.latent(run.id, hit.latent_idx),
                "n_cases": hit.n_cases,
                "n_top1": hit.n_top1,
                "mean_activation": hit.mean_activation,
                "tfidf_concept": hit.tfidf_concept,
                "tfidf_confidence": hit.tfidf_confidence,
                "llm_concept": hit.llm_concept,
                "llm_confidence": hit.llm_confidence,
            }
            for hit in shown
        ],
        "total": len(found.latents),
        "pages": pages,
        "filters": {"page": page_no, "size": size},
        "clamped": None if asked == page_no else {"asked": asked, "shown": page_no},
        "links": {
            "prev": urls.with_params(here, _page=page_no - 1) if page_no > 1 else None,
            "next": urls.with_params(here, _page=page_no + 1) if page_no < pages else None,
        },
    }
