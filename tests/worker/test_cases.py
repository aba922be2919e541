"""Cases and their sides (docs/method.md §1.4, §1.7): nothing on one side is reused on another."""

from __future__ import annotations

import numpy as np

from worker.cases import (
    CONSTRUCTION,
    DEV,
    EVALUATION,
    TEST,
    TRAIN,
    UNUSED,
    VERIFICATION,
    build_cases,
    case_roles,
    case_sets_report,
)
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


def _users_of(cases: object, role: np.ndarray, g: int) -> set[int]:
    return set(np.unique(cases.user[role == g]).tolist())  # type: ignore[attr-defined]


def test_case_roles_are_disjoint_by_user_for_sequential_models() -> None:
    """docs/method.md §1.7: a user's training positions never build a concept its held-out
    positions verify or evaluate; thirds stratified by history length; seeded."""
    lengths = [5 + (u % 30) for u in range(90)]
    cases = build_cases(_dataset(lengths), sequential=True, seed=0)
    role = case_roles(cases, sequential=True, seed=3)
    sets = [_users_of(cases, role, g) for g in (CONSTRUCTION, VERIFICATION, EVALUATION)]
    assert [len(s) for s in sets] == [30, 30, 30]  # 90 users: 30 blocks of 3, one each
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert np.all(cases.side[role == CONSTRUCTION] == TRAIN)
    assert np.all(cases.side[(role == VERIFICATION) | (role == EVALUATION)] != TRAIN)
    # every user of a set has all their cases of that kind in it: nothing of theirs elsewhere
    for g, users in zip((CONSTRUCTION, VERIFICATION, EVALUATION), sets, strict=True):
        theirs = np.isin(cases.user, list(users))
        assert set(role[theirs].tolist()) <= {g, UNUSED}
    # stratified: each third's mean history length within one block's spread of the others
    mean = [np.mean([lengths[u] for u in s]) for s in sets]
    assert max(mean) - min(mean) < 3
    assert np.array_equal(role, case_roles(cases, sequential=True, seed=3))
    assert not np.array_equal(role, case_roles(cases, sequential=True, seed=4))
    report = case_sets_report(cases, role)
    assert report["overlap_users"] == 0 and report["construction_users"] == 30
    assert report["verification_cases"] == 60  # a DEV and a TEST position per user


def test_case_roles_for_one_vector_models_split_the_held_out_users_in_halves() -> None:
    data = _dataset([5 + (u % 7) for u in range(100)])
    cases = build_cases(data, sequential=False, seed=1)
    role = case_roles(cases, sequential=False, seed=1)
    assert np.array_equal(role == CONSTRUCTION, cases.side == TRAIN)
    assert (role == VERIFICATION).sum() == (role == EVALUATION).sum() == 20  # 40 held out
    report = case_sets_report(cases, role)
    assert report == {
        "construction_cases": 60, "construction_users": 60, "verification_cases": 20,
        "verification_users": 20, "evaluation_cases": 20, "evaluation_users": 20,
        "overlap_users": 0,
    }  # fmt: skip
    # the overlap check sees a shared user: give an evaluation case to a verifying user
    shared = cases.subset(np.arange(len(cases)))
    v, e = np.flatnonzero(role == VERIFICATION)[0], np.flatnonzero(role == EVALUATION)[0]
    shared.user[e] = shared.user[v]
    assert case_sets_report(shared, role)["overlap_users"] == 1
