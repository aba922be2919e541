"""Items: an item's text and the latents that fire on the cases recommending it."""

from __future__ import annotations

from fastapi import APIRouter

from backend import urls
from backend.deps import Context, ItemDep, RunDep, SessionDep, page
from backend.errors import responses
from backend.report import run_summary
from core.store import reads

router = APIRouter(tags=["items"])


@page(router, "/runs/{run_id}/items/{idx}", "item.html", name="item", responses=responses(404))
def item_page(run: RunDep, item: ItemDep, session: SessionDep) -> Context:
    """An item and the latents active on recorded cases whose top 10 contains it."""
    found = reads.latents_for_item(session, run.id, item.idx)
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
            for hit in found.latents
        ],
    }
