"""Cases: the contexts a recommender is probed on, and which side of the split each belongs to.

A case is "user u after the first ``length`` items of their sequence": the history is
``sequences[u][:length]`` and the item the model should predict next is ``sequences[u][length]``.

Sides (docs/method.md §1.4 and §1.7 — nothing trained or constructed on one side is evaluated on
another):
- ``TRAIN``: SAE training vectors and the concept *construction* pool.
- ``DEV``: SAE model selection (dev FVU, dev NDCG of the reconstructed model).
- ``TEST``: held-out FVU and the concept *verification* pool.

Sequential models (the representation depends on the history): every training-history position
(length 1 .. n_train-1, target inside train) is TRAIN; the dev position (length n-2) is DEV; the
test position (length n-1) is TEST.

Models with one vector per user (BPRMF, LightGCN): one case per user at the test position
(length n-1); users are split by a seeded permutation into TRAIN / DEV / TEST fractions (60 / 10 /
30 by default: the TEST users are also the verification pool, which needs >= N active cases per
latent, and there is only one vector per user).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.data.dataset import Dataset

TRAIN, DEV, TEST = 0, 1, 2
SIDE_NAMES = {TRAIN: "train", DEV: "dev", TEST: "test"}


@dataclass
class Cases:
    user: np.ndarray  # [C] int64 internal user id
    length: np.ndarray  # [C] int64 history length; the target is sequences[user][length]
    side: np.ndarray  # [C] int8: TRAIN / DEV / TEST

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask_or_index: np.ndarray | slice) -> Cases:
        return Cases(self.user[mask_or_index], self.length[mask_or_index], self.side[mask_or_index])

    def targets(self, dataset: Dataset) -> np.ndarray:
        return np.array(
            [dataset.sequences[u][n] for u, n in zip(self.user, self.length, strict=True)],
            dtype=np.int64,
        )

    def histories(self, dataset: Dataset) -> list[np.ndarray]:
        return [dataset.sequences[u][:n] for u, n in zip(self.user, self.length, strict=True)]


def build_cases(
    dataset: Dataset,
    sequential: bool,
    seed: int,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.3,
) -> Cases:
    """All cases of a dataset for one kind of model, deterministic given ``seed``."""
    if sequential:
        users, lengths, sides = [], [], []
        for u, seq in enumerate(dataset.sequences):
            n = len(seq)
            train_lengths = np.arange(1, n - 2, dtype=np.int64)
            users.append(np.full(len(train_lengths) + 2, u, dtype=np.int64))
            lengths.append(np.concatenate([train_lengths, [n - 2, n - 1]]))
            sides.append(np.concatenate([np.full(len(train_lengths), TRAIN, np.int8), [DEV, TEST]]))
        return Cases(
            np.concatenate(users), np.concatenate(lengths), np.concatenate(sides).astype(np.int8)
        )
    n_users = dataset.n_users
    order = np.random.default_rng(seed).permutation(n_users)
    n_test = int(round(test_fraction * n_users))
    n_dev = int(round(dev_fraction * n_users))
    side = np.full(n_users, TRAIN, dtype=np.int8)
    side[order[:n_test]] = TEST
    side[order[n_test : n_test + n_dev]] = DEV
    test_lengths = np.array([len(s) - 1 for s in dataset.sequences], dtype=np.int64)
    return Cases(np.arange(n_users, dtype=np.int64), test_lengths, side)


# Interpretation's three disjoint case sets, by user (docs/method.md §1.7): the cases that build
# a concept, those that decide whether it is verified, and those every "how good are the
# concepts" figure (Figure 5, Table 8) is measured on. No user has cases in two of them.
UNUSED, CONSTRUCTION, VERIFICATION, EVALUATION = -1, 0, 1, 2
ROLE_NAMES = {CONSTRUCTION: "construction", VERIFICATION: "verification", EVALUATION: "evaluation"}


def _stratified_groups(lengths: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """[U] group 0..n_groups-1 of each user: users sorted by history length (random ties) are cut
    into consecutive blocks of ``n_groups``, each block dealt out in a random order, so every
    group gets the same spread of history lengths (a last, short block at random)."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    group = np.empty(len(lengths), dtype=np.int8)
    for start in range(0, len(order), n_groups):
        block = order[start : start + n_groups]
        group[block] = rng.permutation(n_groups)[: len(block)]
    return group


def case_roles(cases: Cases, sequential: bool, seed: int) -> np.ndarray:
    """[C] int8: CONSTRUCTION / VERIFICATION / EVALUATION / UNUSED per case, disjoint by user.

    One vector per user (BPRMF, LightGCN): the TRAIN users' cases build concepts; the held-out
    users (DEV and TEST) are split in two halves, stratified by history length. Sequential models
    (every user also trains the model): the users are split in three thirds, stratified by
    history length; construction takes its third's TRAIN positions, verification and evaluation
    their thirds' held-out positions (DEV and TEST); every other case is UNUSED. Seeded.
    """
    users = np.unique(cases.user)
    n_users = int(users.max()) + 1 if len(users) else 0
    length = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(length, cases.user, cases.length)  # a user's longest case: their history
    rng = np.random.default_rng([seed, 20260922])
    held_out = cases.side != TRAIN
    role = np.full(len(cases), UNUSED, dtype=np.int8)
    group = np.full(n_users, -1, dtype=np.int8)  # per user: CONSTRUCTION / VERIFICATION / ...
    if sequential:
        group[users] = _stratified_groups(length[users], 3, rng)
        role[(group[cases.user] == CONSTRUCTION) & ~held_out] = CONSTRUCTION
    else:
        trainers = np.unique(cases.user[~held_out])
        group[trainers] = CONSTRUCTION
        role[~held_out] = CONSTRUCTION
        others = np.unique(cases.user[held_out])
        group[others] = VERIFICATION + _stratified_groups(length[others], 2, rng)
    for g in (VERIFICATION, EVALUATION):
        role[(group[cases.user] == g) & held_out] = g
    return role


def case_sets_report(cases: Cases, role: np.ndarray) -> dict[str, int]:
    """The three sets' sizes (cases, users) and the users shared by any two of them (0 by
    construction; recomputed from the roles as a check)."""
    out: dict[str, int] = {}
    users = {}
    for g, name in ROLE_NAMES.items():
        users[g] = set(np.unique(cases.user[role == g]).tolist())
        out[f"{name}_cases"] = int((role == g).sum())
        out[f"{name}_users"] = len(users[g])
    shared = (
        (users[CONSTRUCTION] & users[VERIFICATION])
        | (users[CONSTRUCTION] & users[EVALUATION])
        | (users[VERIFICATION] & users[EVALUATION])
    )
    out["overlap_users"] = len(shared)
    return out
