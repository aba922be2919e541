"""Segment steering: the same edits for every test-side user, vectorised (paper §8 / Table 8).

Here every ``value`` is a *scale* in [SCALE_MIN, SCALE_MAX]: users for whom the latent is active
get z'_l = value * z_l; with ``include_inactive`` the others get value x the latent's mean
non-zero activation, otherwise they are left alone. Reports the mean change in NDCG@N of the
test item and, per edited latent, the concept presence of paper eq. 5 over the users where it
is active (before the edit: with ``include_inactive`` the latent is switched on for everyone
else too, which moves NDCG for all users while "active for" still counts the same users).

Every change comes with a 95% confidence interval: a percentile bootstrap over users of the
mean per-user change (:func:`scipy.stats.bootstrap`, :data:`CI_RESAMPLES` resamples, seeded
with :data:`CI_SEED`, so the same request gives the same interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import bootstrap

from backend.steering.ranking import ndcg_single, rank_users
from backend.steering.types import (
    SCALE_MAX,
    SCALE_MIN,
    TOP_N,
    Edit,
    Interval,
    SegmentLatentReport,
    SegmentResult,
    SteeringError,
    SteerMode,
)

if TYPE_CHECKING:
    from backend.steering.engine import SteeringEngine


CI_RESAMPLES = 1000
CI_SEED = 0
_CI_BATCH = 250  # resamples drawn at a time (memory: batch x users floats)


def change_ci(before: np.ndarray, after: np.ndarray) -> Interval:
    """95% CI of mean(after - before) over paired per-user values [S]; None for S < 2."""
    diff = np.asarray(after, np.float64) - np.asarray(before, np.float64)
    if diff.size < 2:
        return None
    if np.all(diff == diff[0]):  # every resample has the same mean
        return float(diff[0]), float(diff[0])
    res = bootstrap(
        (diff,),
        np.mean,
        n_resamples=CI_RESAMPLES,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(CI_SEED),
        batch=_CI_BATCH,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _check_scales(edits: Sequence[Edit]) -> None:
    for e in edits:
        if not SCALE_MIN <= e.value <= SCALE_MAX:
            raise SteeringError(
                f"latent {e.latent}: segment values are scales in "
                f"[{SCALE_MIN:g}, {SCALE_MAX:g}], got {e.value:g}",
                e.latent,
            )


def _steered_ranks(
    engine: SteeringEngine,
    users: np.ndarray,
    edits: Sequence[Edit],
    mode: SteerMode,
    include_inactive: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top_after [S, N], rank_after [S], active [S, E] bool, changed [S, E] bool) for users
    [S]; ``changed``: the edit changed that user's activation of that latent."""
    n = min(TOP_N, engine.n_items)
    lat = np.asarray([e.latent for e in edits], dtype=np.int64)
    val = np.asarray([e.value for e in edits], dtype=np.float32)
    X = engine.user_vectors[users]
    Z = engine.encode(X)  # [S, n_latents]
    Zl = Z[:, lat]  # [S, E]
    act = Zl > 0
    fill = val * engine.mean_activation[lat].astype(np.float32) if include_inactive else Zl
    new = np.where(act, val * Zl, fill).astype(np.float32)
    changed = new != Zl
    aff = changed.any(axis=1)
    emb, text = engine.item_embeddings, engine.text
    if mode is SteerMode.REPLACE:  # every user's vector becomes a reconstruction
        Z[:, lat] = new
        top_after, _, rank_after = rank_users(users, engine.decode(Z), emb, text, n)
    else:  # error-preserving: users with unchanged codes keep exactly their base list
        # (fancy indexing copies: the engine's base arrays are never written)
        top_after, rank_after = engine.base_top[users, :n], engine.base_test_rank[users]
        X2 = X[aff] + (new[aff] - Zl[aff]) @ engine.W_dec[lat]
        top_after[aff], _, rank_after[aff] = rank_users(users[aff], X2, emb, text, n)
    return top_after, rank_after, act, changed


def _latent_report(
    engine: SteeringEngine,
    edit: Edit,
    active: np.ndarray,
    changed: np.ndarray,
    base_top: np.ndarray,
    top_after: np.ndarray,
) -> SegmentLatentReport:
    """Concept presence before/after over the users [S] where the latent is ``active``, with
    the 95% CIs of the changes (``changed`` [S]: users whose activation the edit set)."""
    mask = engine.latent_concept_mask(edit.latent)
    n_act = int(active.sum())
    pb = pa = sb = sa = None
    p_ci = s_ci = None
    if mask is not None and n_act:
        hb, ha = mask[base_top[active]], mask[top_after[active]]  # [A, N] bool
        pb, pa = float(hb.any(1).mean()), float(ha.any(1).mean())
        sb, sa = float(hb.mean()), float(ha.mean())
        p_ci = change_ci(hb.any(1), ha.any(1))
        s_ci = change_ci(hb.mean(1), ha.mean(1))
    return SegmentLatentReport(
        latent=edit.latent,
        value=edit.value,
        concept=engine.text.tfidf_concepts[edit.latent],
        n_active=n_act,
        n_set=int(changed.sum()),
        presence_before=pb,
        presence_after=pa,
        share_before=sb,
        share_after=sa,
        presence_change_ci=p_ci,
        share_change_ci=s_ci,
    )


def steer_segment(
    engine: SteeringEngine,
    edits: Sequence[Edit],
    mode: SteerMode | str = SteerMode.ERROR_PRESERVING,
    include_inactive: bool = False,
) -> SegmentResult:
    """Apply the same scales to every test-side user of ``engine``'s run (see the module doc)."""
    mode = SteerMode(mode)
    engine.check_edits(edits)
    _check_scales(edits)
    users = engine.text.test_side
    if users.size == 0:
        raise SteeringError(f"run {engine.run_id!r} has no test-side users to steer")
    n = min(TOP_N, engine.n_items)
    # The diff's "before": x's lists for error-preserving, x̂'s for replace (docs/method.md §1.10).
    base_top_all, _, base_rank_all = engine.baseline_lists(mode)
    base_top, base_rank = base_top_all[users, :n], base_rank_all[users]
    top_after, rank_after, act, changed = _steered_ranks(
        engine, users, edits, mode, include_inactive
    )
    aff = changed.any(axis=1)
    nb, na = ndcg_single(base_rank, TOP_N), ndcg_single(rank_after, TOP_N)
    return SegmentResult(
        mode=mode,
        n_users=int(users.size),
        n_affected=int(aff.sum()),
        ndcg_before=float(nb.mean()),
        ndcg_after=float(na.mean()),
        ndcg_affected_before=float(nb[aff].mean()) if aff.any() else None,
        ndcg_affected_after=float(na[aff].mean()) if aff.any() else None,
        latents=[
            _latent_report(engine, e, act[:, j], changed[:, j], base_top, top_after)
            for j, e in enumerate(edits)
        ],
        ndcg_change_ci=change_ci(nb, na),
        ndcg_affected_change_ci=change_ci(nb[aff], na[aff]),
        include_inactive=include_inactive,
    )
