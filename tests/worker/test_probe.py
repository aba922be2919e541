"""Full ranking and top items by hand: masking, ties against the target, chunking."""

import numpy as np
import pytest
import torch

from worker.cases import DEV, TEST, Cases
from worker.data.dataset import Dataset
from worker.probe import case_batch, leave_one_out_cases, rank_targets, top_items, top_n_stable


def tiny_dataset(sequences: list[list[int]], n_items: int) -> Dataset:
    return Dataset(
        name="tiny",
        user_ids=[str(u) for u in range(len(sequences))],
        item_ids=[str(i) for i in range(n_items)],
        sequences=[np.array(s, dtype=np.int64) for s in sequences],
        timestamps=[np.arange(len(s)) for s in sequences],
        item_title=[f"item {i}" for i in range(n_items)],
        item_genres=[[] for _ in range(n_items)],
        item_tags=[[] for _ in range(n_items)],
        item_text=["" for _ in range(n_items)],
    )


# One user, sequence 0 1 2 3 (train 0 1, dev 2, test 3), 6 items; the item "embedding" is a
# 1-d score so the representation [1] scores item i as scores[i].
DS = tiny_dataset([[0, 1, 2, 3]], n_items=6)
SCORES = np.array([[9.0], [8.0], [5.0], [3.0], [4.0], [3.0]], dtype=np.float32)
REP = np.ones((1, 1), dtype=np.float32)


def test_test_position_masks_the_whole_sequence_and_ties_count_against() -> None:
    cases = leave_one_out_cases(DS, TEST)  # target 3 (score 3): masked 0, 1, 2
    # Unmasked non-target items: 4 (score 4 > 3) and 5 (score 3, a tie) -> rank 2.
    assert rank_targets(SCORES, REP, DS, cases).tolist() == [2]


def test_dev_position_masks_train_and_test() -> None:
    cases = leave_one_out_cases(DS, DEV)  # target 2 (score 5): masked 0, 1, 3
    assert rank_targets(SCORES, REP, DS, cases).tolist() == [0]


def test_training_position_masks_future_items_too() -> None:
    cases = Cases(np.array([0]), np.array([1]), np.array([0], dtype=np.int8))  # target 1
    assert rank_targets(SCORES, REP, DS, cases).tolist() == [0]


def test_rank_with_callable_and_chunks_agree() -> None:
    ds = tiny_dataset([[0, 1, 2, 3], [4, 5, 0, 1], [2, 3, 4, 5]], n_items=6)
    rng = np.random.default_rng(0)
    item_emb = rng.normal(size=(6, 3)).astype(np.float32)
    reps = rng.normal(size=(3, 3)).astype(np.float32)
    cases = leave_one_out_cases(ds, TEST)
    full = rank_targets(item_emb, reps, ds, cases)
    chunked = rank_targets(lambda r: r @ torch.from_numpy(item_emb).T, reps, ds, cases, chunk=1)
    assert full.tolist() == chunked.tolist()
    # Brute force: count unmasked items scoring >= the target.
    for c in range(3):
        s = item_emb @ reps[c]
        seq, tgt = ds.sequences[c], ds.sequences[c][-1]
        others = [i for i in range(6) if i not in seq]
        assert full[c] == sum(s[i] >= s[tgt] for i in others)


def test_top_items_mask_history_only() -> None:
    cases = Cases(np.array([0]), np.array([2]), np.array([0], dtype=np.int8))  # history 0, 1
    assert top_items(SCORES, REP, DS, cases, n=3).tolist() == [[2, 4, 3]]


def test_scorer_shape_mismatch_is_loud() -> None:
    with pytest.raises(ValueError, match="expected"):
        rank_targets(lambda r: torch.zeros(1, 2), REP, DS, leave_one_out_cases(DS, TEST))


def test_case_batch_left_pads_and_truncates() -> None:
    ds = tiny_dataset([[0, 1, 2, 3, 4]], n_items=6)
    cases = Cases(np.array([0, 0]), np.array([1, 4]), np.array([0, 2], dtype=np.int8))
    batch = case_batch(ds, cases, max_history=3)
    assert batch["history"].tolist() == [[6, 6, 0], [1, 2, 3]]
    assert batch["length"].tolist() == [1, 4]


@pytest.mark.parametrize("seed", range(5))
def test_top_n_is_the_stable_sorts_head_with_ties_and_masks(seed: int) -> None:
    # Integer scores tie often, masked (-inf) items tie at the bottom, and some rows have fewer
    # than n unmasked items: the head of a stable descending sort in every case (issue 12).
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (64, 40), generator=g).float()
    scores[torch.rand(64, 40, generator=g) < 0.3] = -torch.inf
    scores[:4, 3:] = -torch.inf  # three unmasked items, n = 7
    for n in (1, 7, 40):
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
        assert torch.equal(top_n_stable(scores, n), expected)


def test_top_n_refuses_nan() -> None:
    scores = torch.zeros(2, 5)
    scores[1, 2] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        top_n_stable(scores, 2)
