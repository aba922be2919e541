"""Shared batch plumbing for the recommenders: left-padded histories and negative sampling.

Kept apart from ``base.py`` (the contract) and ``worker.probe`` (inference) so every model's
``training_batches`` builds its tensors the same way the probe does.
"""

from __future__ import annotations

import numpy as np

from worker.data.dataset import Dataset


def history_matrix(
    dataset: Dataset, users_B: np.ndarray, lengths_B: np.ndarray, max_history: int
) -> np.ndarray:
    """[B, max_history] int64: ``sequences[u][:length]`` truncated to the last ``max_history``
    items and *left*-padded with ``n_items`` (the padding id), most recent item last."""
    pad = dataset.n_items
    out_BL = np.full((len(users_B), max_history), pad, dtype=np.int64)
    for row, (u, n) in enumerate(zip(users_B, lengths_B, strict=True)):
        hist = dataset.sequences[int(u)][max(0, int(n) - max_history) : int(n)]
        if len(hist):
            out_BL[row, max_history - len(hist) :] = hist
    return out_BL


# Largest (users x items) bit table KnownItems keeps (bytes); above it, a binary search.
MAX_TABLE_BYTES = 256 * 2**20


class KnownItems:
    """Membership test for (user, item) pairs of the training data, vectorised.

    Keys ``user * n_items + item``: a table of one bit per (user, item) pair while it fits in
    ``MAX_TABLE_BYTES`` (2.8 MB at the ML-1M shape), else the keys sorted once and a binary search.
    The binary search was 1.7 s of a 15 s SASRec epoch at the ML-1M shape; the bit
    table answers the same, so negative sampling draws the same items.
    """

    def __init__(self, dataset: Dataset, max_table_bytes: int = MAX_TABLE_BYTES) -> None:
        pairs_N2 = dataset.train_pairs()
        self.n_items = dataset.n_items
        self.keys_N = np.unique(pairs_N2[:, 0] * self.n_items + pairs_N2[:, 1])
        n_bits = dataset.n_users * self.n_items
        self.bits: np.ndarray | None = None
        if (n_bits + 7) // 8 <= max_table_bytes:  # set the bits in place: no byte-per-pair copy
            self.bits = np.zeros((n_bits + 7) // 8, dtype=np.uint8)
            bit = np.left_shift(1, self.keys_N & 7).astype(np.uint8)
            np.bitwise_or.at(self.bits, self.keys_N >> 3, bit)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array, same shape as ``items`` (``users`` broadcast against it)."""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + items
        if self.bits is not None:
            return ((self.bits[keys >> 3] >> (keys & 7).astype(np.uint8)) & 1).astype(bool)
        if self.keys_N.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.clip(np.searchsorted(self.keys_N, keys), 0, self.keys_N.size - 1)
        return self.keys_N[pos] == keys


def sample_negatives(
    rng: np.random.Generator,
    known: KnownItems,
    users: np.ndarray,
    shape: tuple[int, ...],
    max_tries: int = 10,
) -> np.ndarray:
    """Uniform negatives of the given ``shape`` (leading dim = len(users)), redrawn while they
    hit one of the user's training items. ``users`` must broadcast against ``shape``.

    Only the redrawn entries are looked up again: at the ML-1M shape, checking every entry on
    every one of the ``max_tries`` rounds (heavy users hit their items often, so rounds rarely
    end early) took half of a SASRec epoch. Same draws, in the same order, as checking all.
    """
    neg = rng.integers(0, known.n_items, size=shape, dtype=np.int64)
    users_b = np.asarray(users, dtype=np.int64).reshape((-1,) + (1,) * (len(shape) - 1))
    flat_neg = neg.reshape(-1)  # a view: writes land in neg
    flat_users = np.broadcast_to(users_b, shape).reshape(-1)
    bad = np.flatnonzero(known.contains(flat_users, flat_neg))
    for _ in range(max_tries):
        if bad.size == 0:
            break
        flat_neg[bad] = rng.integers(0, known.n_items, size=bad.size, dtype=np.int64)
        bad = bad[known.contains(flat_users[bad], flat_neg[bad])]
    return neg


def position_instances(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(users [N], lengths [N]) of every training position: history ``seq[:n]`` predicts the
    training item ``seq[n]`` for n in 1 .. len(train)-1 (the TRAIN cases of ``worker.cases``)."""
    users, lengths = [], []
    for u, seq in enumerate(dataset.sequences):
        n_train = len(seq) - 2
        if n_train > 1:
            users.append(np.full(n_train - 1, u, dtype=np.int64))
            lengths.append(np.arange(1, n_train, dtype=np.int64))
    if not users:
        raise ValueError(f"dataset {dataset.name!r} has no user with two or more training items")
    return np.concatenate(users), np.concatenate(lengths)
