"""Per-latent statistics for the latent pages and the ``latents`` table (core.store.schema).

Density is measured on the TRAIN side only (the SAE's own distribution); max, mean, the histogram
and ``dead`` look at every recorded case, because a latent that fires only on test cases is not
dead, just rare in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.interpret.levels import check_codes


@dataclass
class LatentStatistics:
    density: np.ndarray  # [n_latents] share of fit (TRAIN) cases where the latent is active
    max_activation: np.ndarray  # [n_latents] over all cases; 0 when never active
    mean_activation: np.ndarray  # [n_latents] over the cases where active; 0 when never active
    n_active: np.ndarray  # [n_latents] active cases over all recorded cases
    dead: np.ndarray  # [n_latents] bool: never active on any recorded case
    histograms: list[dict[str, list[Any]]]  # {"edges": [bins+1], "counts": [bins]} per latent

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The per-latent arrays under ``<prefix>.<field>`` (the histograms are JSON: ragged)."""
        return {f"{prefix}.{name}": getattr(self, name) for name in _STATISTICS_ARRAYS}

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], prefix: str, histograms: list[dict[str, list[Any]]]
    ) -> LatentStatistics:
        """The inverse of :meth:`to_arrays`, with the histograms from JSON."""
        fields = {name: arrays[f"{prefix}.{name}"] for name in _STATISTICS_ARRAYS}
        return cls(**fields, histograms=histograms)


_STATISTICS_ARRAYS = ("density", "max_activation", "mean_activation", "n_active", "dead")


def latent_statistics(
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    fit_mask: np.ndarray,
    n_latents: int,
    bins: int = 20,
) -> LatentStatistics:
    """Density, max, mean, dead flag and histogram of every latent.

    latent_idx / latent_val [C, k] recorded TopK codes (0 = not active), fit_mask [C] bool (TRAIN
    side, the denominator of density). The histogram spans the latent's own [min, max] non-zero
    activations; a dead latent gets empty lists.
    """
    check_codes(latent_idx, latent_val, n_latents)
    if fit_mask.shape != (latent_idx.shape[0],) or fit_mask.dtype != bool:
        raise ValueError(f"fit_mask must be bool [{latent_idx.shape[0]}], got {fit_mask.shape}")
    active = latent_val > 0
    lat, val = latent_idx[active].astype(np.int64), latent_val[active].astype(np.float64)
    n_active = np.bincount(lat, minlength=n_latents)
    total = np.bincount(lat, weights=val, minlength=n_latents)
    mean = np.divide(total, n_active, out=np.zeros(n_latents), where=n_active > 0)
    vmax = np.zeros(n_latents)
    np.maximum.at(vmax, lat, val)
    fit_active = active & fit_mask[:, None]
    n_fit = int(fit_mask.sum())
    fit_counts = np.bincount(latent_idx[fit_active].astype(np.int64), minlength=n_latents)
    density = fit_counts / n_fit if n_fit else np.zeros(n_latents)

    order = np.argsort(lat, kind="stable")
    bounds = np.searchsorted(lat[order], np.arange(n_latents + 1))
    histograms: list[dict[str, list[Any]]] = []
    for latent in range(n_latents):
        values = val[order[bounds[latent] : bounds[latent + 1]]]
        if len(values) == 0:
            histograms.append({"edges": [], "counts": []})
            continue
        counts, edges = np.histogram(values, bins=bins)
        histograms.append({"edges": edges.tolist(), "counts": counts.tolist()})
    return LatentStatistics(
        density=density,
        max_activation=vmax,
        mean_activation=mean,
        n_active=n_active,
        dead=n_active == 0,
        histograms=histograms,
    )


def decoder_item_effects(
    W_dec: np.ndarray, item_emb: np.ndarray, top: int = 10, chunk: int = 256
) -> tuple[list[list[list[Any]]], list[list[list[Any]]]]:
    """Items each latent's decoder direction promotes and suppresses most.

    W_dec [n_latents, d] (row l is latent l's direction), item_emb [n_items, d]. Raising latent l
    by 1 adds ``W_dec[l] · e_i`` to item i's score (score = u · e_i), so the largest / smallest
    of these are what the latent pushes up / down. Returns (promoted, suppressed), each
    ``[[item, score], ...]`` per latent, strongest first. Chunked over latents to bound memory.
    """
    if W_dec.ndim != 2 or item_emb.ndim != 2 or W_dec.shape[1] != item_emb.shape[1]:
        raise ValueError(
            f"W_dec [n, d] and item_emb [n_items, d] disagree: {W_dec.shape}, {item_emb.shape}"
        )
    top = min(top, item_emb.shape[0])
    promoted: list[list[list[Any]]] = []
    suppressed: list[list[list[Any]]] = []
    for start in range(0, W_dec.shape[0], chunk):
        scores = W_dec[start : start + chunk] @ item_emb.T  # [b, n_items]
        for row in scores:
            hi = np.argpartition(-row, top - 1)[:top]
            hi = hi[np.lexsort((hi, -row[hi]))]
            lo = np.argpartition(row, top - 1)[:top]
            lo = lo[np.lexsort((lo, row[lo]))]
            promoted.append([[int(i), float(row[i])] for i in hi])
            suppressed.append([[int(i), float(row[i])] for i in lo])
    return promoted, suppressed
