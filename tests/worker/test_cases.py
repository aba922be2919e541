"""Cases and their sides (docs/method.md §1.4, §1.7): nothing on one side is reused on another."""

from __future__ import annotations

import numpy as np

from worker.cases import DEV, TEST, TRAIN, build_cases
from worker.data.dataset import Dataset
from worker.stages.train_sae import auto_scale


def _dataset(lengths: list[int]) -> Dataset:
    seqs = [np.arange(n, dtype=np.int64) for n in lengths]
    n_items = max(lengths)
    return Dataset(
        name="tiny", user_ids=[str(u) for u in range(len(lengths))],
        item_ids=[str(i) for i in range(n_items)], sequences=seqs,
        timestamps=[np.arange(n) for n in lengths], item_title=[""] * n_items,
        item_genres=[[]] * n_items, item_tags=[[]] * n_items, item_text=[""] * n_items,
    )  # fmt: skip


def test_sequential_cases_are_every_training_position_then_dev_then_test() -> None:
    cases = build_cases(_dataset([5, 6]), sequential=True, seed=0)
    # user 0 (n=5): train lengths 1, 2 (targets seq[1], seq[2], both train items), dev 3, test 4
    u0 = cases.user == 0
    assert cases.length[u0].tolist() == [1, 2, 3, 4]
    assert cases.side[u0].tolist() == [TRAIN, TRAIN, DEV, TEST]
    assert (cases.side == TEST).sum() == 2 and (cases.side == DEV).sum() == 2
    # a training case's target is never the dev or test item
    seq_len = np.array([5, 6])[cases.user]
    assert np.all(cases.length[cases.side == TRAIN] < seq_len[cases.side == TRAIN] - 2)


def test_user_split_is_seeded_disjoint_and_sized() -> None:
    data = _dataset([5] * 100)
    a = build_cases(data, sequential=False, seed=1)
    b = build_cases(data, sequential=False, seed=1)
    c = build_cases(data, sequential=False, seed=2)
    assert np.array_equal(a.side, b.side) and not np.array_equal(a.side, c.side)
    assert [(a.side == s).sum() for s in (TRAIN, DEV, TEST)] == [60, 10, 30]
    assert np.array_equal(a.user, np.arange(100)) and np.all(a.length == 4)


def test_auto_scale_keeps_latents_below_a_third_of_the_training_vectors_and_at_least_4d() -> None:
    assert auto_scale(40_000, 64, sequential=True) == 16
    # One vector per user: never fewer than 4·d latents (docs/method.md §1.4) ...
    assert auto_scale(361, 64, sequential=False) == 4  # 601 users, 60% train, no fold-ins
    assert auto_scale(421, 64, sequential=False) == 4
    # ... and the paper's 16 once fold-in vectors feed it (361 users x 25 vectors).
    assert auto_scale(9_025, 64, sequential=False) == 16
    assert auto_scale(4_000, 64, sequential=False) == 16
