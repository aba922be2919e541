"""The steering routes' JSON: results, segments, sliders, the user, and "why this item".

Plain functions from the engine's results to the JSON the API answers and the user page
renders (:mod:`backend.routes.steer` has the routes). No routes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from backend import urls
from backend.steering import (
    SCALE_MAX,
    SCALE_MIN,
    Edit,
    SegmentResult,
    SteeringEngine,
    SteerMode,
    SteerResult,
)
from backend.steering.types import Interval
from backend.steering.why import ItemWhy, explain_items
from core.store import reads
from core.store.schema import Latent, Run, User

HISTORY_SHOWN = 50  # most recent history items listed on the user page
WHY_BARS = 8  # latents drawn one bar each in the "why this item" chart; the rest as one bar


def _marks(r: SteerResult) -> tuple[dict[int, int], dict[int, int]]:
    """(item idx -> position in the steered top N, ... in the baseline top N)."""
    return {it.idx: it.rank for it in r.items}, {it.idx: it.rank for it in r.base_items}


def result_json(engine: SteeringEngine, r: SteerResult) -> dict[str, Any]:
    """The JSON of a steering result; shared by the API and the page context.

    Both lists carry their marks: a steered item ``entered`` (not in the baseline top N) or
    ``moved`` (its ``base_rank`` differs), a baseline item ``left`` (not in the steered top N)
    or ``moved`` (``after_rank`` differs); ``same`` otherwise."""
    titles = engine.text.titles
    concept_masks = [
        (rep.latent, engine.latent_concept_mask(rep.latent)) for rep in r.edits if rep.concept
    ]

    def carries(i: int) -> list[int]:
        return [lat for lat, mask in concept_masks if mask is not None and mask[i]]

    after_pos, base_pos = _marks(r)

    def mark(pos: int, other: int | None, missing: str) -> str:
        return missing if other is None else ("same" if other == pos else "moved")

    return {
        "user": r.user,
        "mode": r.mode.value,
        "items": [
            {
                "rank": it.rank,
                "idx": it.idx,
                "title": titles[it.idx],
                "score": it.score,
                "base_rank": it.base_rank,
                "rank_change": it.rank_change,
                "new": it.idx not in base_pos,
                "mark": mark(it.rank, base_pos.get(it.idx), "entered"),
                "is_test_item": it.idx == r.test_item,
                "concepts": carries(it.idx),
            }
            for it in r.items
        ],
        "base_items": [
            {
                "rank": it.rank,
                "idx": it.idx,
                "title": titles[it.idx],
                "score": it.score,
                "after_rank": after_pos.get(it.idx),
                "mark": mark(it.rank, after_pos.get(it.idx), "left"),
                "is_test_item": it.idx == r.test_item,
                "concepts": carries(it.idx),
            }
            for it in r.base_items
        ],
        "diff": {
            "entered": [{"idx": i, "title": titles[i]} for i in r.entered],
            "left": [{"idx": i, "title": titles[i]} for i in r.left],
            "moved": [{"idx": i, "from": a, "to": b, "by": a - b} for i, a, b in r.moved],
            "changed": bool(r.entered or r.moved),
        },
        "edits": [
            {
                "latent": e.latent,
                "value": e.value,
                "kind": e.kind,
                "activation_before": e.activation_before,
                "activation_after": e.activation_after,
                "concept": e.concept,
                "presence_before": e.presence_before,
                "presence_after": e.presence_after,
            }
            for e in r.edits
        ],
        "test_item": {
            "idx": r.test_item,
            "title": titles[r.test_item],
            "rank_before": r.test_rank_before,
            "rank_after": r.test_rank_after,
        },
    }


def _change(before: float | None, after: float | None, ci: Interval) -> dict[str, Any]:
    change = None if before is None or after is None else after - before
    return {"before": before, "after": after, "change": change, "ci95": ci}


def segment_json(r: SegmentResult) -> dict[str, Any]:
    """Segment steering's JSON: every change with its 95% CI (bootstrap over users)."""
    return {
        "mode": r.mode.value,
        "include_inactive": r.include_inactive,
        "n_users": r.n_users,
        "n_affected": r.n_affected,
        "ndcg@10": _change(r.ndcg_before, r.ndcg_after, r.ndcg_change_ci),
        "ndcg@10_affected": _change(
            r.ndcg_affected_before, r.ndcg_affected_after, r.ndcg_affected_change_ci
        ),
        "latents": [
            {
                "latent": lat.latent,
                "value": lat.value,
                "concept": lat.concept,
                "n_active": lat.n_active,
                "n_set": lat.n_set,
                "presence": _change(
                    lat.presence_before, lat.presence_after, lat.presence_change_ci
                ),
                "share": _change(lat.share_before, lat.share_after, lat.share_change_ci),
            }
            for lat in r.latents
        ],
    }


def item_why_json(why: ItemWhy, title: str) -> dict[str, Any]:
    """One item's score split: every latent's part, the decoder bias, the SAE's error term."""
    return {
        "idx": why.idx,
        "title": title,
        "score": why.score,
        "sum_of_parts": why.total,
        "latents": [
            {
                "latent": p.latent,
                "activation": p.activation,
                "contribution": p.contribution,
                "concept": p.concept,
            }
            for p in why.latents
        ],
        "bias": why.bias,
        "error": why.error,
        "item_bias": why.item_bias,
    }


def why_json(
    engine: SteeringEngine,
    user: int,
    edits: Sequence[Edit],
    mode: SteerMode,
    items: list[int],
    shown: list[float] | None = None,
) -> list[dict[str, Any]]:
    """The score split of each of ``items`` for ``user`` after ``edits`` (``shown``: the scores
    the list shows for them, see :func:`backend.steering.why.explain_items`)."""
    whys = explain_items(engine, user, edits, mode, items, shown)
    return [item_why_json(w, engine.text.titles[w.idx]) for w in whys]


def slider(
    engine: SteeringEngine, latent: int, activation: float, value: float | None
) -> dict[str, Any]:
    """One slider's range: scale for an active latent, absolute activation otherwise.

    The absolute range is 100 steps each side of 0 with a 3-significant-digit step (so 0, the
    neutral position, lies on the browser's step grid), a hair inside the engine's limit.
    """
    if activation > 0:
        return {
            "kind": "scale",
            "min": SCALE_MIN,
            "max": SCALE_MAX,
            "step": 0.1,
            "neutral": 1.0,
            "value": 1.0 if value is None else value,
        }
    step = float(f"{engine.absolute_limit(latent) / 100 * 0.999:.3g}")
    lim = float(f"{step * 100:.6g}")
    return {
        "kind": "absolute",
        "min": -lim,
        "max": lim,
        "step": step,
        "neutral": 0.0,
        "value": 0.0 if value is None else value,
    }


def _latent_row(run: Run, idx: int, lat: Latent | None) -> dict[str, Any]:
    """A slider's latent: its link and best concepts (None where the latent has no row)."""
    return {
        "latent": idx,
        "url": urls.latent(run.id, idx),
        "tfidf_concept": None if lat is None else lat.tfidf_concept,
        "tfidf_confidence": None if lat is None else lat.tfidf_confidence,
        "llm_concept": None if lat is None else lat.llm_concept,
        "dead": None if lat is None else lat.dead,
    }


def sliders(
    session: Session, run: Run, engine: SteeringEngine, user: int, edits: list[Edit]
) -> list[dict[str, Any]]:
    """The user's active latents (strongest first), then the edited inactive ones, as sliders
    with their latent's concepts (read in one query)."""
    z = engine.encode(engine.user_vectors[user])
    active = [int(i) for i in sorted(map(int, z.nonzero()[0]), key=lambda i: -z[i])]
    edit_values = {e.latent: e.value for e in edits}
    shown = [*active, *(e.latent for e in edits if e.latent not in set(active))]
    latents = reads.latents_by_idx(session, run.id, shown)
    out = []
    for lat in shown:
        act = float(z[lat])
        out.append(
            {
                **_latent_row(run, lat, latents.get(lat)),
                "activation": act,
                "active": act > 0,
                **slider(engine, lat, act, edit_values.get(lat)),
            }
        )
    return out


def user_json(session: Session, run: Run, user: User) -> dict[str, Any]:
    """The user's split: the most recent HISTORY_SHOWN history items, dev and test item."""
    shown = list(user.history)[-HISTORY_SHOWN:]
    items = reads.items_by_idx(session, run.id, [*shown, user.dev_item, user.test_item])

    def item_json(i: int) -> dict[str, Any]:
        it = items.get(i)
        return {
            "idx": i,
            "url": urls.item(run.id, i),
            "title": it.title if it else f"item {i}",
            "genres": list(it.genres) if it else [],
            "tags": list(it.tags) if it else [],
        }

    return {
        "idx": user.idx,
        "external_id": user.external_id,
        "side": user.side,
        "history_length": len(user.history),
        "history": [item_json(i) for i in reversed(shown)],  # most recent first
        "dev_item": item_json(user.dev_item),
        "test_item": item_json(user.test_item),
    }
