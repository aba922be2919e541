"""What the neighbours lens reads of a published version, loaded once and kept (numpy only).

Loaded through :mod:`core.rundir`'s checked loaders (digests verified, values finite) and keyed,
like the steering cache (docs/architecture.md, run versions), on the version and on each file's
inode, size and mtime: a republished or rewritten file is noticed at the next request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend.steering.cache import published
from core.rundir import load_sae_arrays, load_vectors
from core.store import reads
from core.store.schema import Run

_BATCH = 4096  # users encoded at a time
_KEEP = 4  # runs kept in memory (a page compares a run with at most a few others)


@dataclass(frozen=True, eq=False)  # compared (and hashed) by identity: one object per load
class LensArrays:
    """One run's arrays for the neighbours lens.

    ``W_dec`` [n, d] and ``unit`` (its rows scaled to length 1); ``item_emb`` [I, d]; ``codes``
    [U, k] each user's TopK latents (-1 where the ReLU left it at 0) and ``n_active`` [n] how many
    users each latent fires on; ``user_ids`` / ``item_ids``: the dataset's own ids, by index.
    """

    run_id: str
    W_dec: np.ndarray
    unit: np.ndarray
    item_emb: np.ndarray
    codes: np.ndarray
    n_active: np.ndarray
    user_ids: list[str]
    item_ids: list[str]

    @property
    def n_latents(self) -> int:
        return int(self.W_dec.shape[0])

    def users_of(self, latent: int) -> np.ndarray:
        """The users (indices) whose code has ``latent`` active."""
        return np.flatnonzero((self.codes == latent).any(axis=1))


def topk_codes(sae: dict[str, np.ndarray], k: int, x: np.ndarray) -> np.ndarray:
    """[U, k] the latents TopK((x - b_dec) W_enc + b_enc) keeps, -1 where ReLU zeroes one (the
    SAE's encoder, docs/method.md §1.4, as the steering engine applies it)."""
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), _BATCH):
        pre = (x[start : start + _BATCH] - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"]
        top = np.argpartition(-pre, k - 1, axis=-1)[:, :k]
        alive = np.take_along_axis(pre, top, axis=-1) > 0
        out[start : start + _BATCH] = np.where(alive, top, -1)
    return out


def _load(session: Session, run: Run) -> LensArrays:
    files = published(session, run)
    cfg, sae = load_sae_arrays(files)
    vectors = load_vectors(files)
    codes = topk_codes(sae, int(cfg["k"]), vectors["user_vectors"])
    n = sae["W_dec"].shape[0]
    norms = np.linalg.norm(sae["W_dec"], axis=1, keepdims=True)
    unit = np.divide(sae["W_dec"], norms, out=np.zeros_like(sae["W_dec"]), where=norms > 0)
    return LensArrays(
        run_id=run.id,
        W_dec=sae["W_dec"],
        unit=unit,
        item_emb=vectors["item_embeddings"],
        codes=codes,
        n_active=np.bincount(codes[codes >= 0], minlength=n),
        user_ids=reads.external_ids(session, run.id, "users"),
        item_ids=reads.external_ids(session, run.id, "items"),
    )


_CACHE: OrderedDict[str, tuple[tuple[Any, ...], LensArrays]] = OrderedDict()
_LOCK = threading.Lock()


def lens_arrays(session: Session, run: Run) -> LensArrays:
    """The run's :class:`LensArrays`, loaded on first use; raises
    :class:`core.rundir.ArtifactError` (the app answers 503) when a file is missing or changed."""
    files = published(session, run)
    key = (str(files.dir), files.version, str(run.created_at), files.signature())
    with _LOCK:
        hit = _CACHE.get(run.id)
        if hit is not None and hit[0] == key:
            _CACHE.move_to_end(run.id)
            return hit[1]
    arrays = _load(session, run)  # outside the lock: a slow load does not hold up other runs
    with _LOCK:
        _CACHE[run.id] = (key, arrays)
        _CACHE.move_to_end(run.id)
        while len(_CACHE) > _KEEP:
            _CACHE.popitem(last=False)
    return arrays


def clear_cache() -> None:
    """Forget every loaded run (tests)."""
    with _LOCK:
        _CACHE.clear()
