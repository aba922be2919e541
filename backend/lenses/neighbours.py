"""A latent's nearest latents (docs/method.md §6.3), in its own run and in another run on the same
dataset, from the published versions' arrays (:mod:`backend.lenses.arrays`); numpy only.

- same run, **decoder cosine**: cosine of the two decoder directions;
- same run, **co-activation**: Jaccard index of the sets of users whose code has each latent active;
- other run, **co-activation**: the same Jaccard index over the users both runs have (matched by the
  dataset's own user id);
- other run, **item effects**: Pearson correlation, over the items both runs have (matched by the
  dataset's own item id), of the two latents' decoder effects ``W_dec[l] · e_i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from backend.lenses.arrays import LensArrays

TOP = 5  # neighbours listed per measure


@dataclass(frozen=True)
class Scored:
    idx: int
    score: float


def _best(
    scores: np.ndarray, top: int, skip: int | None = None, positive: bool = False
) -> list[Scored]:
    """The ``top`` highest scores (ties: lower index first), leaving out ``skip`` and, when
    ``positive``, scores of 0 or less (no co-activation at all is no neighbour)."""
    scores = scores.astype(np.float64, copy=True)
    if skip is not None:
        scores[skip] = -np.inf
    if positive:
        scores[scores <= 0] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))[:top]
    return [Scored(int(i), float(scores[i])) for i in order if np.isfinite(scores[i])]


def decoder_cosine(a: LensArrays, latent: int, top: int = TOP) -> list[Scored]:
    return _best(a.unit @ a.unit[latent], top, skip=latent)


def _jaccard(co: np.ndarray, n_self: int, n_other: np.ndarray) -> np.ndarray:
    union = n_self + n_other - co
    return np.divide(co, union, out=np.zeros(len(co)), where=union > 0)


def _co_counts(codes: np.ndarray, n_latents: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=n_latents)


def coactivation(a: LensArrays, latent: int, top: int = TOP) -> list[Scored]:
    users = a.users_of(latent)
    co = _co_counts(a.codes[users], a.n_latents)
    return _best(_jaccard(co, len(users), a.n_active), top, skip=latent, positive=True)


@lru_cache(maxsize=16)
def _align(a: LensArrays, b: LensArrays, table: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices in a, indices in b) of the users (or items) both runs have, by the dataset's id."""
    a_ids, b_ids = (a.user_ids, b.user_ids) if table == "users" else (a.item_ids, b.item_ids)
    where_b = {ext: i for i, ext in enumerate(b_ids)}
    pairs = [(i, where_b[ext]) for i, ext in enumerate(a_ids) if ext in where_b]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a_idx, b_idx = np.asarray(pairs, dtype=np.int64).T
    return a_idx, b_idx


@lru_cache(maxsize=16)
def _common_users(a: LensArrays, b: LensArrays) -> tuple[np.ndarray, np.ndarray]:
    """([U_a] each of a's users' index in b or -1, [n_b] b's activity over the shared users)."""
    a_idx, b_idx = _align(a, b, "users")
    in_b = np.full(len(a.codes), -1, dtype=np.int64)
    in_b[a_idx] = b_idx
    return in_b, _co_counts(b.codes[b_idx], b.n_latents)


def cross_coactivation(a: LensArrays, b: LensArrays, latent: int, top: int = TOP) -> list[Scored]:
    """b's latents by the Jaccard index of their users with ``latent``'s, over shared users."""
    in_b, b_active = _common_users(a, b)
    mapped = in_b[a.users_of(latent)]
    mapped = mapped[mapped >= 0]
    co = _co_counts(b.codes[mapped], b.n_latents)
    return _best(_jaccard(co, len(mapped), b_active), top, positive=True)


@lru_cache(maxsize=16)
def _centred_items(a: LensArrays, b: LensArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a's and b's shared items' embeddings, centred over those items; the norm of each of b's
    latents' centred effect vector)."""
    a_idx, b_idx = _align(a, b, "items")
    ea = a.item_emb[a_idx].astype(np.float64)
    eb = b.item_emb[b_idx].astype(np.float64)
    ea -= ea.mean(axis=0) if len(ea) else 0.0
    eb -= eb.mean(axis=0) if len(eb) else 0.0
    w = b.W_dec.astype(np.float64)
    norms = np.sqrt(np.maximum(((w @ (eb.T @ eb)) * w).sum(axis=1), 0.0))
    return ea, eb, norms


def cross_effects(a: LensArrays, b: LensArrays, latent: int, top: int = TOP) -> list[Scored]:
    """b's latents by the Pearson correlation of their item effects with ``latent``'s, over the
    shared items: r = (Ea_c w_l)·(Eb_c w_m) / (|Ea_c w_l| |Eb_c w_m|), centred embeddings."""
    ea, eb, norms = _centred_items(a, b)
    effect = ea @ a.W_dec[latent].astype(np.float64)
    length = float(np.linalg.norm(effect))
    if len(effect) < 3 or length == 0:
        return []
    dots = (effect @ eb) @ b.W_dec.astype(np.float64).T
    r = np.divide(dots, length * norms, out=np.full(len(norms), -np.inf), where=norms > 0)
    return _best(np.clip(r, -1.0, 1.0), top)


def shared_counts(a: LensArrays, b: LensArrays) -> tuple[int, int]:
    """(users, items) both runs have."""
    return len(_align(a, b, "users")[0]), len(_align(a, b, "items")[0])


def clear_cache() -> None:
    for cached in (_align, _common_users, _centred_items):
        cached.cache_clear()
