"""Probe a recommender (docs/method.md §1.3) and rank items for cases with full ranking
(docs/method.md §1.2).

The probe site is ``Recommender.user_representation``: the vector u with score(u, i) = u · e_i.
Everything downstream (SAE training, reconstructed NDCG, steering) works on those vectors and
the item embeddings, so ranking here takes either a model or a bare item-embedding matrix.

Memory: scores are built ``chunk`` cases at a time ([chunk, n_items] float32), so 40k cases
x 2k items or 100k items both stay small.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from worker.cases import DEV, TEST, Cases
from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender
from worker.recommenders.sampling import history_matrix

# Something that turns representations [B, d] into scores [B, n_items]: a model (its ``score``),
# an item-embedding matrix [n_items, d] (dot product), or any callable (e.g. SAE reconstruction).
Scorer = Recommender | np.ndarray | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def case_batch(dataset: Dataset, cases: Cases, max_history: int) -> Batch:
    """The contract's batch for ``cases``: user [C], history [C, max_history] left-padded with
    ``n_items``, length [C] (the untruncated history length)."""
    return {
        "user": torch.as_tensor(cases.user, dtype=torch.long),
        "history": torch.from_numpy(history_matrix(dataset, cases.user, cases.length, max_history)),
        "length": torch.as_tensor(cases.length, dtype=torch.long),
    }


def leave_one_out_cases(dataset: Dataset, side: int) -> Cases:
    """One case per user at the dev (length n-2) or test (length n-1) position."""
    if side not in (DEV, TEST):
        raise ValueError(f"side must be DEV ({DEV}) or TEST ({TEST}), got {side}")
    offset = 2 if side == DEV else 1
    lengths = np.array([len(s) - offset for s in dataset.sequences], dtype=np.int64)
    return Cases(
        np.arange(dataset.n_users, dtype=np.int64), lengths, np.full(dataset.n_users, side, np.int8)
    )


@torch.no_grad()
def probe(model: Recommender, dataset: Dataset, cases: Cases, batch_size: int = 1024) -> np.ndarray:
    """[C, d] float32 representations of ``cases`` (eval mode, no grad; mode restored after)."""
    max_history = int(getattr(model.config, "max_history", 20))
    was_training = model.training
    model.eval()
    # One output array filled batch by batch: a list of per-batch arrays kept every
    # batch's allocation alive between the next batch's temporaries, and the heap grew to 3.7 GB
    # at the ML-1M shape (994k cases; 5.5 GB while each part was a view of [B, L, d]).
    out: np.ndarray | None = None
    try:
        for lo in range(0, len(cases), batch_size):
            batch = case_batch(dataset, cases.subset(slice(lo, lo + batch_size)), max_history)
            rep = model.user_representation(batch).float()
            if out is None:
                out = np.empty((len(cases), rep.shape[1]), dtype=np.float32)
            out[lo : lo + len(rep)] = rep.numpy()
    finally:
        model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _score_fn(scorer: Scorer) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(scorer, Recommender):
        return scorer.score
    if isinstance(scorer, np.ndarray | torch.Tensor):
        item_emb_ND = torch.as_tensor(np.asarray(scorer, dtype=np.float32))
        if item_emb_ND.ndim != 2:
            raise ValueError(
                f"item embeddings must be [n_items, d], got {tuple(item_emb_ND.shape)}"
            )
        return lambda rep_BD: rep_BD @ item_emb_ND.T
    if callable(scorer):
        return scorer
    raise TypeError(f"cannot score with a {type(scorer).__name__}")


@torch.no_grad()
def _chunk_scores(
    score: Callable[[torch.Tensor], torch.Tensor], reps_CD: np.ndarray, lo: int, hi: int, n: int
) -> torch.Tensor:
    scores_BN = score(torch.as_tensor(np.asarray(reps_CD[lo:hi], dtype=np.float32))).float()
    if scores_BN.shape != (hi - lo, n):
        raise ValueError(f"scorer returned {tuple(scores_BN.shape)}, expected {(hi - lo, n)}")
    return scores_BN.clone()


def known_items_mask(
    dataset: Dataset, users: np.ndarray, lengths: np.ndarray, whole_sequence: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the items to mask for each case, as index arrays into [B, n_items].

    ``whole_sequence``: mask every item of the user's sequence except the case's target
    (``sequences[u][length]``) — the evaluation rule of docs/method.md §1.2: at the test position
    that is train + dev, at the dev position train + test. Otherwise mask the history
    ``seq[:length]`` only (what the user has already seen when recommending).
    """
    rows, cols = [], []
    for row, (u, n) in enumerate(zip(users, lengths, strict=True)):
        seq = dataset.sequences[int(u)]
        if whole_sequence:
            items = seq[seq != seq[int(n)]]
        else:
            items = seq[: int(n)]
        rows.append(np.full(len(items), row, dtype=np.int64))
        cols.append(items)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols).astype(np.int64)


def rank_targets(
    scorer: Scorer, reps_CD: np.ndarray, dataset: Dataset, cases: Cases, chunk: int = 2048
) -> np.ndarray:
    """[C] int64 0-based rank of each case's target among all items (docs/method.md §1.2 full
    ranking).

    The user's other known items (the whole sequence except the target) are masked out; a tie
    counts against the target: rank = #unmasked non-target items with score >= target score.
    """
    if len(reps_CD) != len(cases):
        raise ValueError(f"{len(reps_CD)} representations for {len(cases)} cases")
    score = _score_fn(scorer)
    targets_C = cases.targets(dataset)
    ranks_C = np.zeros(len(cases), dtype=np.int64)
    for lo in range(0, len(cases), chunk):
        hi = min(lo + chunk, len(cases))
        scores_BN = _chunk_scores(score, reps_CD, lo, hi, dataset.n_items)
        rows, cols = known_items_mask(dataset, cases.user[lo:hi], cases.length[lo:hi], True)
        scores_BN[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
        tgt_B = torch.from_numpy(targets_C[lo:hi])
        target_B1 = scores_BN.gather(1, tgt_B[:, None])
        if not torch.isfinite(target_B1).all():
            raise ValueError("a target's score is not finite (NaN/inf in the representation?)")
        # >= counts the target itself once; ties with other items count against it.
        ranks_C[lo:hi] = ((scores_BN >= target_B1).sum(1) - 1).numpy()
    return ranks_C


def top_items(
    scorer: Scorer,
    reps_CD: np.ndarray,
    dataset: Dataset,
    cases: Cases,
    n: int = 10,
    chunk: int = 2048,
) -> np.ndarray:
    """[C, n] int64 the model's top-n items per case, best first (ties: lower id first), with
    the history ``sequences[u][:length]`` masked out (what the user has already seen)."""
    if len(reps_CD) != len(cases):
        raise ValueError(f"{len(reps_CD)} representations for {len(cases)} cases")
    if not 0 < n <= dataset.n_items:
        raise ValueError(f"n must be in 1..{dataset.n_items}, got {n}")
    score = _score_fn(scorer)
    out_CK = np.zeros((len(cases), n), dtype=np.int64)
    for lo in range(0, len(cases), chunk):
        hi = min(lo + chunk, len(cases))
        scores_BN = _chunk_scores(score, reps_CD, lo, hi, dataset.n_items)
        rows, cols = known_items_mask(dataset, cases.user[lo:hi], cases.length[lo:hi], False)
        scores_BN[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
        out_CK[lo:hi] = top_n_stable(scores_BN, n).numpy()
    return out_CK


def top_n_stable(scores_BN: torch.Tensor, n: int) -> torch.Tensor:
    """[B, n] the first n columns of a stable descending sort of ``scores_BN`` (ties: lower item
    id first), without sorting every item: a full sort of [cases, items] was 162 of record's
    185 s at the ML-1M shape. ``topk`` finds the n best; where no other item ties
    the n-th best score those n are the sort's set, ordered here by score then id; the rare rows
    with a tie at the boundary (or fewer than n unmasked items) are sorted whole."""
    values_Bn, ids_Bn = torch.topk(scores_BN, n, dim=1)
    if torch.isnan(values_Bn).any():  # topk ranks NaN above every number
        raise ValueError("a score is NaN (NaN in the representation or the item embeddings?)")
    ids_Bn = ids_Bn.sort(dim=1).values
    order_Bn = torch.sort(scores_BN.gather(1, ids_Bn), dim=1, descending=True, stable=True)
    top_Bn = ids_Bn.gather(1, order_Bn.indices)
    tied_B = (scores_BN >= values_Bn[:, -1:]).sum(1) > n
    if tied_B.any():
        rows = tied_B.nonzero()[:, 0]
        whole = torch.sort(scores_BN[rows], dim=1, descending=True, stable=True).indices
        top_Bn[rows] = whole[:, :n]
    return top_Bn


def evaluate(model: Recommender, dataset: Dataset, side: int, batch_size: int = 1024) -> np.ndarray:
    """[n_users] ranks of every user's dev or test target (leave-one-out, full ranking)."""
    cases = leave_one_out_cases(dataset, side)
    return rank_targets(model, probe(model, dataset, cases, batch_size), dataset, cases)


def user_vector_cases(dataset: Dataset) -> Cases:
    """Each user at the test position: the vector the explorer shows and steers."""
    return leave_one_out_cases(dataset, TEST)
