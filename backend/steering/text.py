"""What the steering engine knows besides arrays: item titles and tokens, users' known items.

Built once per run from :func:`core.store.reads.steering_rows` (plain data; no SQL here).
Concept presence tokenises with :func:`core.text.analyze`, the tokeniser TF-IDF construction
and verification use, over the same text (``Item.text``, the metadata TF-IDF saw): a concept
is present in an item exactly when verification would have counted it present ("sci-fi" is one
token, "Amélie" is "amelie").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.rundir import ArtifactError
from core.store.reads import ItemText, SteeringRows, UserSplit
from core.text import analyze

_NO_ITEMS = np.zeros(0, dtype=np.int64)


@dataclass
class RunText:
    """A run's text and split, as arrays; concept masks are computed on demand and cached."""

    titles: list[str]  # [n_items]
    postings: dict[str, np.ndarray]  # token -> sorted int64 idx of the items carrying it
    known_indptr: np.ndarray  # [n_users + 1] int64, CSR over users
    known_indices: np.ndarray  # [nnz] int64: history + dev item of each user
    test_items: np.ndarray  # [n_users] int64, -1 when the user has no row
    test_side: np.ndarray  # [n_test_side] int64 user idx with side == "test"
    tfidf_concepts: list[str | None]  # [n_latents]
    _masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n_items(self) -> int:
        return len(self.titles)

    def concept_mask(self, term: str) -> np.ndarray:
        """[n_items] bool: items whose metadata tokens include every token of ``term``.

        For a TF-IDF concept (one token) this is verification's own test, ``term in tokens``.
        A term with no token (a stop word, punctuation) is present nowhere.
        """
        tokens = analyze(term)
        key = " ".join(tokens)
        mask = self._masks.get(key)
        if mask is not None:
            return mask
        mask = np.zeros(self.n_items, dtype=bool)
        if tokens:
            mask[self.postings.get(tokens[0], _NO_ITEMS)] = True
            for token in tokens[1:]:
                has = np.zeros(self.n_items, dtype=bool)
                has[self.postings.get(token, _NO_ITEMS)] = True
                mask &= has
        with self._lock:
            self._masks[key] = mask
        return mask


def _postings(
    run_id: str, items: Sequence[ItemText], n_items: int
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Titles [n_items] and token -> sorted int64 item indices, from the item rows."""
    titles = [""] * n_items
    postings: dict[str, list[int]] = {}
    for item in items:
        if not 0 <= item.idx < n_items:
            raise ArtifactError(f"run {run_id!r}: item idx {item.idx} outside [0, {n_items})")
        titles[item.idx] = item.title
        for token in set(analyze(item.text)):
            postings.setdefault(token, []).append(item.idx)
    return titles, {tok: np.unique(np.asarray(ids, np.int64)) for tok, ids in postings.items()}


def _known_items(
    run_id: str, users: Sequence[UserSplit], n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(known_indptr [U+1], known_indices [nnz], test_items [U], test_side [S]) from user rows.

    A user's known items are its history and dev item: everything ranking must mask.
    """
    known: list[list[int]] = [[] for _ in range(n_users)]
    test_items = np.full(n_users, -1, dtype=np.int64)
    test_side: list[int] = []
    for user in users:
        if not 0 <= user.idx < n_users:
            raise ArtifactError(f"run {run_id!r}: user idx {user.idx} outside [0, {n_users})")
        known[user.idx] = [*user.history, user.dev_item]
        test_items[user.idx] = user.test_item
        if user.side == "test":
            test_side.append(user.idx)
    lengths = np.fromiter((len(k) for k in known), dtype=np.int64, count=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter((i for k in known for i in k), dtype=np.int64, count=int(indptr[-1]))
    return indptr, indices, test_items, np.asarray(sorted(test_side), dtype=np.int64)


def build_run_text(
    run_id: str, rows: SteeringRows, n_items: int, n_users: int, n_latents: int
) -> RunText:
    """The :class:`RunText` of a run from its rows; sizes are the run's (``Run.n_items``...).

    Raises :class:`ArtifactError` when a row's index is outside the run's sizes (the database
    and the run's arrays disagree).
    """
    titles, postings = _postings(run_id, rows.items, n_items)
    indptr, indices, test_items, test_side = _known_items(run_id, rows.users, n_users)
    concepts: list[str | None] = [None] * n_latents
    for idx, concept in rows.tfidf_concepts:
        if not 0 <= idx < n_latents:
            raise ArtifactError(f"run {run_id!r}: latent idx {idx} outside [0, {n_latents})")
        concepts[idx] = concept
    return RunText(
        titles=titles,
        postings=postings,
        known_indptr=indptr,
        known_indices=indices,
        test_items=test_items,
        test_side=test_side,
        tfidf_concepts=concepts,
    )
