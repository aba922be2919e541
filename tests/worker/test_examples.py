"""Example selection (docs/method.md §1.7): disjoint pools, distinct predicted items, seeded
negatives."""

from __future__ import annotations

import time

import numpy as np

from worker.cases import DEV, TEST, TRAIN, Cases
from worker.interpret.examples import select_examples, top_distinct


def _cases(sides: list[int]) -> Cases:
    n = len(sides)
    return Cases(np.arange(n), np.ones(n, np.int64), np.array(sides, np.int8))


def _toy() -> tuple[Cases, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 cases, k = 2, latents 0..2.

    Latent 0 fires on TRAIN cases 0-5 (values 6..1) and TEST cases 6-9 (values 4..1);
    latent 1 fires only on TEST case 10; latent 2 never fires (slot value 0).
    Case 1 and case 0 predict the same item, so case 1 is dropped from construction.
    """
    sides = [TRAIN] * 6 + [TEST] * 4 + [TEST, DEV]
    idx = np.array([[0, 2]] * 10 + [[1, 2], [0, 2]], np.int64)
    val = np.zeros((12, 2), np.float32)
    val[:6, 0] = [6, 5, 4, 3, 2, 1]
    val[6:10, 0] = [4, 3, 2, 1]
    val[10, 0] = 7.0
    val[11, 0] = 9.0  # DEV: in neither pool
    top1 = np.array([10, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25])
    top_items = np.stack([top1, top1 + 100], axis=1)
    levels = np.where(val > 0, 5, 0)
    return _cases(sides), idx, val, levels, top_items


def test_construction_and_verification_come_from_their_pools() -> None:
    cases, idx, val, levels, top_items = _toy()
    ex = select_examples(cases, idx, val, levels, top_items, n_latents=3, n=3, seed=0)
    assert ex.construction.case[0].tolist() == [0, 2, 3]  # case 1 repeats case 0's item
    assert ex.construction.item[0].tolist() == [10, 11, 12]
    np.testing.assert_allclose(ex.construction.activation[0], [6, 4, 3])
    assert ex.verification.case[0].tolist() == [6, 7, 8]
    assert ex.construction.level[0].tolist() == [5, 5, 5]
    assert ex.n_active_construction.tolist() == [6, 0, 0]  # active cases, before distinct items
    assert ex.n_active_verification.tolist() == [4, 1, 0]
    assert ex.too_rare.tolist() == [False, True, True]
    assert ex.verification.case[1].tolist() == [10, -1, -1]
    assert ex.construction.case[2].tolist() == [-1, -1, -1]


def test_random_negatives_are_inactive_test_cases_and_seeded() -> None:
    cases, idx, val, levels, top_items = _toy()
    ex = select_examples(cases, idx, val, levels, top_items, n_latents=3, n=3, seed=0)
    # latent 0 is active on TEST cases 6-9: the only inactive TEST case is 10
    assert ex.random.case[0].tolist() == [10, -1, -1]
    assert ex.random.item[0].tolist() == [24, -1, -1]
    assert ex.random.level[0].tolist() == [0, 0, 0]
    # latent 1 is active on TEST case 10; latent 2 on none
    for lat, inactive in ((1, {6, 7, 8, 9}), (2, {6, 7, 8, 9, 10})):
        chosen = set(ex.random.case[lat].tolist())
        assert len(chosen) == 3 and chosen <= inactive
    again = select_examples(cases, idx, val, levels, top_items, n_latents=3, n=3, seed=0)
    assert np.array_equal(again.random.case, ex.random.case)


def test_random_negatives_are_uniform_over_inactive_cases() -> None:
    n_test = 10
    cases = _cases([TEST] * n_test)
    idx = np.zeros((n_test, 1), np.int64)
    val = np.zeros((n_test, 1), np.float32)
    val[:5, 0] = 1.0  # active on cases 0-4
    top_items = np.arange(n_test)[:, None]
    seen = np.zeros(n_test)
    for seed in range(300):
        ex = select_examples(cases, idx, val, val.astype(int), top_items, 1, n=1, seed=seed)
        seen[ex.random.case[0, 0]] += 1
    assert seen[:5].sum() == 0
    assert seen[5:].min() > 30  # ~60 each when uniform


def test_top_distinct_ties_break_by_lower_index() -> None:
    groups = np.array([0, 0, 0, 1])
    values = np.array([1.0, 1.0, 2.0, 1.0])
    items = np.array([5, 6, 5, 5])
    pos = top_distinct(groups, values, items, np.arange(4), n_groups=2, n=3)
    assert pos.tolist() == [[2, 1, -1], [3, -1, -1]]


def test_scales_to_real_sizes() -> None:
    rng = np.random.default_rng(0)
    C, k, n_latents = 40_000, 8, 1024
    idx = (rng.integers(0, n_latents, (C, 1)) + 127 * np.arange(k)) % n_latents  # distinct
    val = rng.exponential(size=(C, k)).astype(np.float32)
    sides = rng.choice([TRAIN, DEV, TEST], size=C, p=[0.8, 0.1, 0.1]).astype(np.int8)
    cases = Cases(np.arange(C), np.ones(C, np.int64), sides)
    top_items = rng.integers(0, 2000, size=(C, 10))
    start = time.perf_counter()
    ex = select_examples(cases, idx, val, np.ones_like(idx), top_items, n_latents, n=5, seed=1)
    assert time.perf_counter() - start < 10
    assert (ex.construction.count == 5).all() and not ex.too_rare.any()
    c = ex.construction.case
    assert (sides[c] == TRAIN).all() and (sides[ex.verification.case] == TEST).all()
    lat = 17
    mine = (idx == lat).any(axis=1)
    assert not mine[ex.random.case[lat]].any()
