"""The paper's interpretation metrics (docs/method.md §1.9, paper §4.4, §5), as pure functions over
arrays.

- Table 3: intra- and inter-latent similarity of the item embeddings of latents' top items.
- Table 4: number of latents and unique concepts, verified and all.
- The null's effect (docs/method.md §1.11): latents with confidence >= 0.8, and how many of them
  are verified -- also rejecting their permutation null at 5% (rank p-value, n >= 19 draws;
  ``null_summary``).

"Verified" is ``core.reports.is_verified`` when the nulls are given (the pipeline always gives
them), else the paper's confidence >= 0.8 alone.
- Table 6: coverage of item features (genres, tags) by verified TF-IDF concepts.
- Figure 5: concept hit ratio of the top-1 item by activation level, vs the global rate.
- Figure 2: histogram of confidence scores.

"Top items" of a latent are the predicted (top-1) items of its most activated cases, distinct
(``top_latent_items``); items are the rows of ``item_emb`` / ``item_text``; ``-1`` pads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from core.reports import (
    VERIFIED_CONFIDENCE,
    details_null_n,
    details_null_p,
    details_null_p95,
    is_confident,
    is_verified,
)
from worker.interpret.examples import top_distinct
from worker.interpret.levels import N_LEVELS, check_codes

_EPS = 1e-9  # confidences are ratios of small integers; compare with a tolerance


def verified_mask(
    confidence: Sequence[float | None],
    threshold: float = VERIFIED_CONFIDENCE,
    null_p: Sequence[float | None] | None = None,
) -> np.ndarray:
    """[L] bool: confidence is known and >= threshold; given each latent's null p-value
    (``core.reports.details_null_p``: None below 19 draws), also verified by the one
    definition, ``core.reports.is_verified`` (docs/method.md §1.11)."""
    ok = [c is not None and c >= threshold - _EPS for c in confidence]
    if null_p is not None:
        if len(null_p) != len(confidence):
            raise ValueError(f"{len(null_p)} null p-values for {len(confidence)} confidences")
        ok = [o and is_verified(c, p) for o, c, p in zip(ok, confidence, null_p, strict=True)]
    return np.array(ok, dtype=bool)


def null_summary(
    confidence: Sequence[float | None],
    details: Sequence[dict[str, Any] | None],
    margins: Sequence[float | None] | None = None,
) -> dict[str, Any]:
    """docs/method.md §1.11 for one method and representation (``core.reports.NullSummary``):
    latents with confidence >= 0.8, how many are verified (null p <= 0.05 with n >= 19), the
    nulls' sizes (smallest over verified concepts: ``null_n_min``), p95 (mean, median) and, for
    TF-IDF, the median margin of the concept term. ``details``: each concept's details."""
    if len(details) != len(confidence):
        raise ValueError(f"{len(details)} details for {len(confidence)} confidences")
    scored = [(c, d) for c, d in zip(confidence, details, strict=True) if c is not None]
    p95s = [p for _, d in scored if (p := details_null_p95(d)) is not None]
    verified = [d for c, d in scored if is_verified(c, details_null_p(d))]
    sizes = [details_null_n(d) for _, d in scored if details_null_n(d) > 0]
    kept = [m for (c, m) in zip(confidence, margins or [], strict=False) if c is not None]
    kept_margins = [m for m in kept if m is not None]
    return {
        "confident": sum(is_confident(c) for c, _ in scored),
        "verified": len(verified),
        "with_confidence": len(scored),
        "with_null": len(sizes),
        "with_test": sum(details_null_p(d) is not None for _, d in scored),  # n >= 19
        "null_n_min": min((details_null_n(d) for d in verified), default=None),
        "null_n_median": float(np.median(sizes)) if sizes else None,
        "null_p95_mean": float(np.mean(p95s)) if p95s else None,
        "null_p95_median": float(np.median(p95s)) if p95s else None,
        "margin_median": float(np.median(kept_margins)) if kept_margins else None,
    }


def top_latent_items(
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    top1_items: np.ndarray,
    n_latents: int,
    n: int = 5,
    case_mask: np.ndarray | None = None,
) -> np.ndarray:
    """[n_latents, n] the predicted items of each latent's n most activated cases, distinct.

    latent_idx / latent_val [C, k]; top1_items [C]; case_mask [C] bool restricts the cases
    (e.g. the TEST side). Rows are -1 padded where a latent has fewer distinct items.
    """
    check_codes(latent_idx, latent_val, n_latents)
    C, k = latent_idx.shape
    active = latent_val > 0
    if case_mask is not None:
        active &= case_mask[:, None]
    case = np.broadcast_to(np.arange(C)[:, None], (C, k))[active]
    lat = latent_idx[active].astype(np.int64)
    items = top1_items[case].astype(np.int64)
    pos = top_distinct(lat, latent_val[active], items, case, n_latents, n)
    return np.where(pos >= 0, items[np.maximum(pos, 0)] if len(items) else -1, -1)


def _unit(emb: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / np.where(norm > 0, norm, 1.0)


def intra_latent_similarity(items: np.ndarray, item_emb: np.ndarray) -> np.ndarray:
    """[L] mean cosine over ALL pairs of each latent's top items; NaN with fewer than 2 items.

    items [L, m] (-1 padded), item_emb [n_items, d]. The reference code used only the top pair;
    docs/method.md §1.9 asks for all m(m-1)/2 pairs of the top 5.
    """
    valid = items >= 0
    e = _unit(item_emb[np.maximum(items, 0)]) * valid[..., None]  # [L, m, d], padding zeroed
    sims = e @ e.transpose(0, 2, 1)  # [L, m, m]
    n = valid.sum(axis=1)
    pairs = n * (n - 1) / 2
    off = (sims.sum(axis=(1, 2)) - np.einsum("lii->l", sims)) / 2  # sum over i < j
    return np.divide(off, pairs, out=np.full(len(items), np.nan), where=pairs > 0)


def inter_latent_similarity(items: np.ndarray, item_emb: np.ndarray) -> float:
    """Mean over unordered pairs of distinct latents of their average cross cosine.

    For latents A and B: mean over (a in A's top items, b in B's top items) of cos(e_a, e_b),
    i.e. average linkage over the same item sets as :func:`intra_latent_similarity`, so the two
    numbers are on one scale (a silhouette's two halves, paper §4.4). Equals the dot product of
    the two latents' mean unit embeddings. Latents without items are left out; NaN if fewer than
    two remain.
    """
    valid = items >= 0
    n = valid.sum(axis=1)
    keep = n > 0
    if keep.sum() < 2:
        return float("nan")
    e = _unit(item_emb[np.maximum(items[keep], 0)]) * valid[keep][..., None]
    centroids = e.sum(axis=1) / n[keep, None]  # [L', d] mean unit embedding
    gram = centroids @ centroids.T
    L = len(centroids)
    return float((gram.sum() - np.trace(gram)) / (L * (L - 1)))


def similarity_table(
    items: np.ndarray,
    item_emb: np.ndarray,
    confidence: Sequence[float | None],
    threshold: float = VERIFIED_CONFIDENCE,
    null_p: Sequence[float | None] | None = None,
) -> dict[str, float | int]:
    """Table 3 row: {"intra", "inter", "n_latents"} over verified latents (``verified_mask``)."""
    if len(confidence) != len(items):
        raise ValueError(f"{len(confidence)} confidences for {len(items)} latents")
    sel = verified_mask(confidence, threshold, null_p)
    intra = intra_latent_similarity(items[sel], item_emb) if sel.any() else np.array([])
    intra = intra[~np.isnan(intra)]
    return {
        "intra": float(intra.mean()) if len(intra) else float("nan"),
        "inter": inter_latent_similarity(items[sel], item_emb),
        "n_latents": int(sel.sum()),
    }


def concept_counts(
    concepts: Sequence[str | None],
    confidence: Sequence[float | None],
    threshold: float = VERIFIED_CONFIDENCE,
    null_p: Sequence[float | None] | None = None,
) -> dict[str, int]:
    """Table 4 cell: latents and unique concepts, verified (>= threshold) and all.

    "All" counts latents with a non-empty concept text, whatever their confidence; unique
    concepts compare texts case-insensitively after stripping.
    """
    if len(concepts) != len(confidence):
        raise ValueError(f"{len(concepts)} concepts for {len(confidence)} confidences")
    texts = [(c or "").strip().lower() for c in concepts]
    has = np.array([bool(t) for t in texts], dtype=bool)
    ver = verified_mask(confidence, threshold, null_p) & has
    return {
        "latents_verified": int(ver.sum()),
        "concepts_verified": len({t for t, v in zip(texts, ver, strict=True) if v}),
        "latents_all": int(has.sum()),
        "concepts_all": len({t for t in texts if t}),
    }


def feature_coverage(
    item_features: Sequence[Sequence[str]],
    verified_terms: Sequence[str],
    analyzer: Callable[[str], list[str]],
) -> dict[str, Any]:
    """Table 6: share of the data's distinct features named by a verified TF-IDF concept.

    item_features: per item, its genres (or tags). Features and terms are matched through the
    TF-IDF tokenisation (``analyzer``): a feature is covered when all of its tokens are verified
    concept terms, which for a one-token feature ("Comedy" -> "comedy") is the paper's exact
    match. Features with no token (e.g. only stop words) are reported, not counted. Returns
    {"all": {...}, "single_term": {...}} with n_features, n_covered, coverage, covered.
    """
    terms = set(verified_terms)
    features = sorted({f for fs in item_features for f in fs})
    tokens = {f: analyzer(f) for f in features}
    countable = [f for f in features if tokens[f]]

    def summary(fs: list[str]) -> dict[str, Any]:
        covered = [f for f in fs if set(tokens[f]) <= terms]
        return {
            "n_features": len(fs),
            "n_covered": len(covered),
            "coverage": len(covered) / len(fs) if fs else float("nan"),
            "covered": covered,
        }

    return {
        "all": summary(countable),
        "single_term": summary([f for f in countable if len(tokens[f]) == 1]),
        "no_token": [f for f in features if not tokens[f]],
    }


def concept_item_matrix(
    item_tokens: Sequence[frozenset[str]] | Sequence[set[str]], terms: Sequence[str]
) -> np.ndarray:
    """[n_items, len(terms)] bool: item i's metadata carries term t (token membership)."""
    unique = sorted(set(terms))
    col = {t: j for j, t in enumerate(unique)}
    out = np.zeros((len(item_tokens), len(unique)), dtype=bool)
    for i, toks in enumerate(item_tokens):
        for t in toks:
            j = col.get(t)
            if j is not None:
                out[i, j] = True
    return out[:, [col[t] for t in terms]]


def hit_ratio_by_level(
    latent_idx: np.ndarray,
    levels: np.ndarray,
    top1_items: np.ndarray,
    concepts: Mapping[int, str],
    item_tokens: Sequence[frozenset[str]] | Sequence[set[str]],
    case_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Figure 5 (paper §5.3): how often the top-1 item carries the latent's concept, per level.

    For every (case, active latent with a concept) pair at level L in 1..10, a hit is the
    concept term among the case's top-1 item's tokens; ``hit_ratio[L-1]`` is the mean over those
    pairs (NaN when none). ``global`` is the paper's red line: for each concept, the share of all
    cases (active or not) whose top-1 item carries it, averaged over the concepts.
    latent_idx / levels [C, k]; top1_items [C]; concepts {latent: term} (verified ones);
    case_mask [C] bool (e.g. the TEST side).
    """
    C, _ = latent_idx.shape
    mask = np.ones(C, bool) if case_mask is None else case_mask
    latents = np.array(sorted(concepts), dtype=np.int64)
    result: dict[str, Any] = {"levels": list(range(1, N_LEVELS + 1))}
    if len(latents) == 0 or not mask.any():
        result |= {
            "hit_ratio": [float("nan")] * N_LEVELS,
            "n": [0] * N_LEVELS,
            "global": float("nan"),
        }
        return result
    has = concept_item_matrix(item_tokens, [concepts[int(lat)] for lat in latents])  # [n_items, m]
    column = np.full(int(max(latent_idx.max(), latents.max())) + 1, -1, np.int64)
    column[latents] = np.arange(len(latents))
    col = column[latent_idx]  # [C, k]
    pair = (col >= 0) & (levels > 0) & mask[:, None]
    cases = np.broadcast_to(np.arange(C)[:, None], latent_idx.shape)[pair]
    hits = has[top1_items[cases], col[pair]]
    lv = levels[pair]
    n = np.bincount(lv, minlength=N_LEVELS + 1)[1:]
    h = np.bincount(lv, weights=hits, minlength=N_LEVELS + 1)[1:]
    ratio = np.divide(h, n, out=np.full(N_LEVELS, np.nan), where=n > 0)
    result |= {
        "hit_ratio": ratio.tolist(),
        "n": n.tolist(),
        "global": float(has[top1_items[mask]].mean(axis=0).mean()),
    }
    return result


def confidence_histogram(confidence: Sequence[float | None], bins: int = 10) -> dict[str, Any]:
    """Figure 2: {"edges": [bins+1], "counts": [bins], "n_unverified": int} over [0, 1].

    Bins are [i/bins, (i+1)/bins), the last one closed; the tolerance keeps 0.8 = 8/10 in the
    [0.8, 0.9) bin despite float edges. None (too rare / no text) is counted apart.
    """
    vals = np.array([c for c in confidence if c is not None], dtype=np.float64)
    if ((vals < -_EPS) | (vals > 1 + _EPS)).any():
        raise ValueError("confidence scores must lie in [0, 1]")
    b = np.clip(np.floor(vals * bins + _EPS).astype(np.int64), 0, bins - 1)
    return {
        "edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
        "counts": np.bincount(b, minlength=bins).tolist(),
        "n_unverified": len(confidence) - len(vals),
    }
