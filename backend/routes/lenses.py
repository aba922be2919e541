"""Lenses (docs/method.md §6): the latent map of a run and a latent's nearest latents in its own
run and in other runs on the same dataset; each a page with its JSON twin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from backend import urls
from backend.deps import Context, LatentDep, RunDep, SessionDep, page
from backend.errors import responses
from backend.lenses import neighbours as nb
from backend.lenses.arrays import lens_arrays
from backend.report import run_summary
from core.records import map_method
from core.rundir import ArtifactError
from core.store import reads
from core.store.reads import LatentMapRow
from core.store.schema import Latent, Run

router = APIRouter(tags=["lenses"])

OTHER_RUNS_MAX = 4  # other runs on the same dataset compared, newest first


def map_url(run_id: str, **params: object) -> str:
    """The latent map; ``latent=`` marks one latent on it."""
    return urls.with_params(f"{urls.run(run_id)}/map", **params)


def neighbours_url(run_id: str, idx: int) -> str:
    return f"{urls.latent(run_id, idx)}/neighbours"


def concept_method(row: LatentMapRow | Latent) -> str:
    """Which methods gave the latent a concept with a confidence: both, tfidf, llm or none."""
    tfidf, llm = row.tfidf_confidence is not None, row.llm_confidence is not None
    return "both" if tfidf and llm else "tfidf" if tfidf else "llm" if llm else "none"


def _best_concept(row: LatentMapRow | Latent) -> tuple[str | None, float | None]:
    """The concept with the higher confidence (TF-IDF on a tie), else whichever text exists."""
    options = [(row.tfidf_confidence, row.tfidf_concept), (row.llm_confidence, row.llm_concept)]
    scored = [(c, t) for c, t in options if c is not None]
    if scored:
        conf, text = max(scored, key=lambda ct: ct[0])
        return text, conf
    return row.tfidf_concept or row.llm_concept, None


def _point(run_id: str, row: LatentMapRow) -> dict[str, Any]:
    concept, confidence = _best_concept(row)
    return {
        "idx": row.idx,
        # 3 decimals place a point to well under a pixel; shorter JSON for the 1,000s of points
        "x": round(row.map_x, 3) if row.map_x is not None else None,
        "y": round(row.map_y, 3) if row.map_y is not None else None,
        "density": round(row.density, 6),
        "dead": row.dead,
        "method": concept_method(row),
        "concept": concept,
        "confidence": confidence,
        "url": urls.latent(run_id, row.idx),
    }


@page(router, "/runs/{run_id}/map", "map.html", name="latent_map", responses=responses(404))
def latent_map(
    run: RunDep,
    session: SessionDep,
    latent: Annotated[int | None, Query(ge=0, description="a latent to mark on the map")] = None,
) -> Context:
    """The latent map: a 2-D layout of the decoder directions, coloured by concept."""
    rows = reads.latent_map_rows(session, run.id)
    mapped = [r for r in rows if r.map_x is not None and r.map_y is not None]
    points = [_point(run.id, r) for r in mapped]
    counts = {m: sum(p["method"] == m for p in points) for m in ("both", "tfidf", "llm", "none")}
    return {
        "run": run_summary(run),
        "layout": map_method(run.n_latents),
        "n_latents": len(rows),
        "n_mapped": len(points),
        "n_dead": sum(p["dead"] for p in points),
        "by_method": counts,
        "highlight": latent if latent is not None and latent < len(rows) else None,
        "points": points,
        "links": {"latents": urls.latents(run.id), "run": urls.run(run.id)},
    }


def _refs(run: Run, scored: list[nb.Scored], latents: dict[int, Latent]) -> list[dict[str, Any]]:
    out = []
    for s in scored:
        lat = latents.get(s.idx)
        concept, confidence = _best_concept(lat) if lat else (None, None)
        out.append(
            {
                "idx": s.idx,
                "url": urls.latent(run.id, s.idx),
                "score": round(s.score, 4),
                "concept": concept,
                "confidence": confidence,
                "dead": bool(lat.dead) if lat else None,
            }
        )
    return out


# How many nearest latents (by decoder cosine) the latent page shows inline (docs/method.md §6.3).
INLINE_NEIGHBOURS = 5


def nearest_inline(session: SessionDep, run: Run, idx: int) -> list[dict[str, Any]] | None:
    """The latent page's top :data:`INLINE_NEIGHBOURS` latents by decoder cosine, with their
    concepts; None when the run's arrays cannot be read (the page keeps its links)."""
    try:
        a = lens_arrays(session, run)
    except ArtifactError:
        return None
    cosine = nb.decoder_cosine(a, idx, INLINE_NEIGHBOURS)
    return _refs(run, cosine, reads.latents_by_idx(session, run.id, {s.idx for s in cosine}))


def _other_run(session: SessionDep, run: Run, other: Run, latent: int) -> dict[str, Any]:
    a = lens_arrays(session, run)
    try:
        b = lens_arrays(session, other)
    except ArtifactError as err:  # that run's files are broken: say so, keep the others
        return {"run": run_summary(other), "error": str(err)}
    by_users = nb.cross_coactivation(a, b, latent)
    by_items = nb.cross_effects(a, b, latent)
    n_users, n_items = nb.shared_counts(a, b)
    wanted = {s.idx for s in by_users + by_items}
    latents = reads.latents_by_idx(session, other.id, wanted)
    return {
        "run": run_summary(other),
        "shared_users": n_users,
        "shared_items": n_items,
        "coactivation": _refs(other, by_users, latents),
        "item_effects": _refs(other, by_items, latents),
    }


@page(
    router,
    "/runs/{run_id}/latents/{idx}/neighbours",
    "neighbours.html",
    name="latent_neighbours",
    responses=responses(404, 503),
)
def latent_neighbours(run: RunDep, latent: LatentDep, session: SessionDep) -> Context:
    """A latent's nearest latents: decoder cosine and co-activation here, matches in other runs."""
    a = lens_arrays(session, run)
    cosine, coactive = nb.decoder_cosine(a, latent.idx), nb.coactivation(a, latent.idx)
    latents = reads.latents_by_idx(session, run.id, {s.idx for s in cosine + coactive})
    others = reads.runs_on_dataset(session, run.dataset, exclude=run.id)[:OTHER_RUNS_MAX]
    concept, confidence = _best_concept(latent)
    return {
        "run": run_summary(run),
        "latent": {
            "idx": latent.idx,
            "url": urls.latent(run.id, latent.idx),
            "concept": concept,
            "confidence": confidence,
            "dead": latent.dead,
            "n_users_active": int(a.n_active[latent.idx]),
        },
        "same_run": {
            "decoder_cosine": _refs(run, cosine, latents),
            "coactivation": _refs(run, coactive, latents),
        },
        "other_runs": [_other_run(session, run, other, latent.idx) for other in others],
        "links": {
            "latent": urls.latent(run.id, latent.idx),
            "map": map_url(run.id, latent=latent.idx),
        },
    }
