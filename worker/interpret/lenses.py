"""Lenses (docs/method.md §6): each latent's confound correlations and its place on the latent map.

- ``activity_corr``: Spearman correlation, across users, of the latent's activation on the user's
  test-position vector (0 where it is not among the TopK) with the user's training history length.
- ``popularity_corr``: Spearman correlation, across items, of the latent's decoder effect on the
  item (``W_dec[l] · e_i``, the quantity ``promoted`` ranks by) with the item's training
  popularity.
- ``map_x`` / ``map_y``: a 2-D layout of the unit decoder directions, PCA to at most 50 dimensions
  then scikit-learn's t-SNE with a fixed ``random_state`` (PCA alone below
  :data:`core.records.MAP_TSNE_MIN_LATENTS` latents, where t-SNE's neighbourhoods are too small).

Spearman's rho is Pearson's r of the average ranks (``scipy.stats.rankdata``), which is exactly what
``scipy.stats.spearmanr`` computes; ranking whole chunks of latents at once keeps it one
vectorised pass instead of one call per latent. A latent constant over users or items (a dead
latent, a zero decoder row) has no correlation: NaN here, ``None`` in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from core.records import MAP_TSNE_MIN_LATENTS, map_method
from worker.run import Run

_CHUNK = 256  # latents ranked at a time, at most
_CHUNK_CELLS = 4_000_000  # and at most this many [users or items] x latents values at once


def _chunk(n_rows: int) -> int:
    """Latents per block so that a block of ``n_rows`` values each stays within memory bounds."""
    return max(1, min(_CHUNK, _CHUNK_CELLS // max(n_rows, 1)))


_PCA_DIMS = 50  # t-SNE's input dimension (scikit-learn's advice for t-SNE on wide data)
_TSNE_ITER = 500  # half scikit-learn's default: a map of ~1,000 points has settled by then


@dataclass
class LatentLenses:
    """Per latent [n]: the two confound correlations (NaN: undefined) and map coordinates."""

    activity_corr: np.ndarray
    popularity_corr: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    method: str  # how the map was laid out ("t-SNE" or "PCA")

    def row(self, lat: int) -> dict[str, Any]:
        """The ``latents`` table's lens columns for latent ``lat`` (NaN -> None)."""
        out: dict[str, Any] = {}
        for name in ("activity_corr", "popularity_corr", "map_x", "map_y"):
            value = float(getattr(self, name)[lat])
            out[name] = value if np.isfinite(value) else None
        return out


def _rank_pearson(ranks_NL: np.ndarray, target_ranks_N: np.ndarray) -> np.ndarray:
    """Pearson's r of each column of ``ranks_NL`` with ``target_ranks_N`` (NaN where constant)."""
    x = ranks_NL - ranks_NL.mean(axis=0)
    y = target_ranks_N - target_ranks_N.mean()
    denom = np.sqrt((x * x).sum(axis=0) * (y @ y))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (y @ x) / denom
    return np.where(denom > 0, np.clip(r, -1.0, 1.0), np.nan)


def activity_correlations(
    user_idx: np.ndarray, user_val: np.ndarray, history_len: np.ndarray, n_latents: int
) -> np.ndarray:
    """[n_latents] Spearman rho across users of each latent's activation (0 where not active) with
    the user's history length. ``user_idx`` / ``user_val`` [U, k]: each user's TopK codes."""
    n_users = len(history_len)
    if user_idx.shape != user_val.shape or user_idx.shape[0] != n_users:
        raise ValueError(
            f"user codes {user_idx.shape} / {user_val.shape} do not match {n_users} history lengths"
        )
    target = rankdata(np.asarray(history_len, dtype=np.float64))
    active = user_val > 0
    rows = np.nonzero(active)[0]
    lat, val = user_idx[active].astype(np.int64), user_val[active].astype(np.float64)
    out = np.full(n_latents, np.nan)
    step = _chunk(n_users)
    for start in range(0, n_latents, step):
        stop = min(start + step, n_latents)
        z_UL = np.zeros((n_users, stop - start))
        sel = (lat >= start) & (lat < stop)
        z_UL[rows[sel], lat[sel] - start] = val[sel]
        out[start:stop] = _rank_pearson(rankdata(z_UL, axis=0), target)
    return out


def popularity_correlations(
    W_dec: np.ndarray, item_emb: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    """[n_latents] Spearman rho across items of each latent's decoder effect ``W_dec[l] · e_i``
    with the item's training popularity: ``W_dec`` [n, d], ``item_emb`` [I, d], ``popularity``
    [I] (training interactions)."""
    if W_dec.shape[1] != item_emb.shape[1] or len(popularity) != len(item_emb):
        raise ValueError(
            f"W_dec {W_dec.shape}, item_emb {item_emb.shape} and popularity "
            f"[{len(popularity)}] disagree"
        )
    target = rankdata(np.asarray(popularity, dtype=np.float64))
    out = np.full(W_dec.shape[0], np.nan)
    step = _chunk(len(item_emb))
    items = item_emb.astype(np.float64)
    for start in range(0, W_dec.shape[0], step):
        effects_IL = items @ W_dec[start : start + step].T.astype(np.float64)
        out[start : start + step] = _rank_pearson(rankdata(effects_IL, axis=0), target)
    return out


def latent_map(W_dec: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) [n] of every latent's unit decoder direction (docs/method.md §6): PCA to at most 50
    dimensions, then t-SNE (``random_state=seed``, perplexity 30 or less for small SAEs); PCA's
    first two components alone below ``MAP_TSNE_MIN_LATENTS`` latents."""
    n = W_dec.shape[0]
    if n < 3:  # nothing to lay out: the latents in a row
        return np.arange(n, dtype=np.float64), np.zeros(n)
    norms = np.linalg.norm(W_dec, axis=1, keepdims=True)
    unit = np.divide(W_dec, norms, out=np.zeros_like(W_dec, dtype=np.float64), where=norms > 0)
    dims = min(_PCA_DIMS, unit.shape[1], n)
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(unit)
    if n < MAP_TSNE_MIN_LATENTS:
        xy = reduced[:, :2] if dims >= 2 else np.column_stack([reduced[:, 0], np.zeros(n)])
    else:
        perplexity = min(30.0, (n - 1) / 3)
        tsne = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            max_iter=_TSNE_ITER,
            random_state=seed,
        )
        xy = tsne.fit_transform(reduced)
    return xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)


def latent_lenses(
    W_dec: np.ndarray,
    item_emb: np.ndarray,
    popularity: np.ndarray,
    user_idx: np.ndarray,
    user_val: np.ndarray,
    history_len: np.ndarray,
    seed: int,
) -> LatentLenses:
    """Every lens column of every latent (docs/method.md §6)."""
    n = W_dec.shape[0]
    x, y = latent_map(W_dec, seed)
    return LatentLenses(
        activity_corr=activity_correlations(user_idx, user_val, history_len, n),
        popularity_corr=popularity_correlations(W_dec, item_emb, popularity),
        map_x=x,
        map_y=y,
        method=map_method(n),
    )


def run_lenses(run: Run) -> LatentLenses:
    """:func:`latent_lenses` of a run's SAE, item embeddings, training data and recorded users."""
    dataset, rec = run.dataset, run.record
    popularity = np.bincount(dataset.train_pairs()[:, 1], minlength=dataset.n_items)
    history_len = np.array([len(dataset.train_items(u)) for u in range(dataset.n_users)])
    W_dec = np.asarray(run.sae.W_dec.detach().cpu().numpy(), dtype=np.float64)
    return latent_lenses(
        W_dec, np.asarray(run.probe.item_emb), popularity, rec.user_latent_idx,
        rec.user_latent_val, history_len, run.config.seed,
    )  # fmt: skip
