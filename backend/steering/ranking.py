"""Ranking every item for many users at once, memory-bounded (docs/method.md §1.2's convention).

Every item is scored, the user's known items (history + dev item) are masked, lists are ordered
by score descending then item index, and the test item's rank counts ties against it.
"""

from __future__ import annotations

import numpy as np

from backend.steering.text import RunText
from backend.steering.types import CHUNK_ELEMS


def order_desc(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates sorted by score descending, then item index (the list order everywhere)."""
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def rank_chunk(
    users: np.ndarray, X_CD: np.ndarray, item_embeddings: np.ndarray, text: RunText, depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C users' vectors [C, d] -> top ``depth`` items [C, depth] int64 (list order), their
    scores [C, depth] float32 and the test items' ranks [C] int64, known items masked."""
    scores = X_CD @ item_embeddings.T  # [C, I]
    p = text.known_indptr
    lengths = p[users + 1] - p[users]
    rows = np.repeat(np.arange(users.size), lengths)
    cols = np.concatenate([text.known_indices[p[u] : p[u + 1]] for u in users])
    scores[rows, cols] = -np.inf
    # Candidates sorted by index first, then a stable sort on score: ties break on index.
    cand = np.sort(np.argpartition(-scores, depth - 1, axis=1)[:, :depth], axis=1)
    order = np.argsort(-np.take_along_axis(scores, cand, 1), axis=1, kind="stable")
    top = np.take_along_axis(cand, order, 1)
    t = text.test_items[users]
    t_scores = scores[np.arange(users.size), np.maximum(t, 0)]
    ranks = (scores >= t_scores[:, None]).sum(1) - 1
    return top, np.take_along_axis(scores, top, 1), ranks


def rank_users(
    users: np.ndarray, X_UD: np.ndarray, item_embeddings: np.ndarray, text: RunText, depth: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rank_chunk` over any number of users [U], a memory-bounded chunk at a time."""
    tops = [np.zeros((0, depth), np.int64)]
    scores = [np.zeros((0, depth), np.float32)]
    ranks = [np.zeros(0, np.int64)]
    size = max(1, CHUNK_ELEMS // max(item_embeddings.shape[0], 1))
    for start in range(0, users.size, size):
        sl = slice(start, start + size)
        top, sc, rank = rank_chunk(users[sl], X_UD[sl], item_embeddings, text, depth)
        tops.append(top)
        scores.append(sc)
        ranks.append(rank)
    return np.concatenate(tops), np.concatenate(scores), np.concatenate(ranks)


def ndcg_single(ranks: np.ndarray, n: int) -> np.ndarray:
    """NDCG@n of a single relevant item at 0-based ``ranks`` [U] (1 / log2(rank + 2) in the
    top n, else 0; the same as the worker's per-case NDCG)."""
    return np.where(ranks < n, 1.0 / np.log2(ranks + 2.0), 0.0)
