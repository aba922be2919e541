"""More user-like vectors for one-vector-per-user models: fold-ins of sub-sampled histories.

A BPRMF or LightGCN run has one vector per user: a few hundred training vectors cannot feed a
dictionary of 4·d latents (docs/method.md §1.4). For each TRAIN-side user we draw sub-samples
of their training history and *fold them in*: with the item embeddings frozen, fit a free user
vector u by the BPR objective the model was trained with (score = u · e_i, sampled negatives).
These are the vectors the model would give users with those histories, so they lie where real
user vectors lie. Held-out users contribute nothing: only TRAIN-side users' training items are
sampled.

Where the model can compute a history's representation itself (LightGCN: the user's embedding
plus the propagation over the sub-sampled items; ``Recommender.partial_history_reps``), that is
used instead of a fold-in: its vectors lie exactly where the model puts users.

The number of fold-in steps is calibrated, not guessed: the same fold-in on each training
user's FULL training history is compared with the vector the model learned for them, and the
step count with the smallest relative error is used for the sub-samples (its error is reported).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class FoldInConfig:
    per_user: int = 24  # sub-sampled histories per training user
    keep_min: float = 0.2  # share of the user's training history a sub-sample keeps, drawn
    keep_max: float = 0.9  # uniformly in [keep_min, keep_max] (at least one item)
    n_pairs: int = 32  # (positive, uniform negative) pairs sampled per vector per step
    # Adam; measured on the demo BPRMF: lr 0.01 reproduces the learned vectors from full
    # histories with a relative squared error of 0.23 (lr 0.05: 0.66 at best).
    lr: float = 0.01
    checkpoints: tuple[int, ...] = (10, 25, 50, 100, 200)  # step counts tried in calibration
    # Histories folded in together: memory and time grow with the chunk, not with all
    # sub-samples (ML-1M shape: 87k sub-samples, 4.5 GB peak and ~300 s at once).
    chunk: int = 2048
    seed: int = 0


@dataclass
class FoldInResult:
    vectors: np.ndarray  # [M, d] float32
    steps: int  # the calibrated step count (0: the model's own representation, no fold-in)
    calibration_error: dict[int, float]  # steps -> mean ‖u_fold − u‖² / ‖u‖² on full histories
    n_users: int  # training users sampled


def _padded(histories: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, L] int64 item ids (0-padded) and [M] lengths."""
    lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)
    out = torch.zeros((len(histories), int(lengths.max())), dtype=torch.long)
    for row, h in enumerate(histories):
        out[row, : len(h)] = torch.as_tensor(h, dtype=torch.long)
    return out, lengths


def fold_in(
    item_emb: np.ndarray,
    histories: Sequence[np.ndarray],
    config: FoldInConfig,
    init: np.ndarray,
    record_at: Sequence[int],
) -> dict[int, np.ndarray]:
    """Fit one vector per history by BPR against frozen ``item_emb`` [I, d].

    ``init`` [d]: the starting point of every vector (the mean training user vector). Returns
    the vectors [M, d] after each step count in ``record_at``. Histories are folded in
    ``config.chunk`` at a time; each vector's loss is the mean over its own pairs, so its
    gradient does not depend on how many are folded in together (docs/method.md §1.4).
    """
    gen = torch.Generator().manual_seed(config.seed)
    items = torch.as_tensor(item_emb, dtype=torch.float32)
    start_D = torch.as_tensor(init, dtype=torch.float32)
    out = {step: np.empty((len(histories), items.shape[1]), np.float32) for step in record_at}
    for lo in range(0, len(histories), config.chunk):
        chunk = _fold_in_chunk(items, histories[lo : lo + config.chunk], config, start_D, gen,
                               record_at)  # fmt: skip
        for step, vecs in chunk.items():
            out[step][lo : lo + len(vecs)] = vecs
    return out


def _fold_in_chunk(
    items: torch.Tensor,
    histories: Sequence[np.ndarray],
    config: FoldInConfig,
    start_D: torch.Tensor,
    gen: torch.Generator,
    record_at: Sequence[int],
) -> dict[int, np.ndarray]:
    hist, lengths = _padded(histories)
    m = len(histories)
    u = torch.nn.Parameter(start_D.repeat(m, 1).clone())
    opt = torch.optim.Adam([u], lr=config.lr)
    out: dict[int, np.ndarray] = {}
    for step in range(1, max(record_at) + 1):
        pick = (torch.rand((m, config.n_pairs), generator=gen) * lengths[:, None]).long()
        pos = hist.gather(1, pick)  # [M, P]
        neg = torch.randint(0, len(items), (m, config.n_pairs), generator=gen)  # [M, P]
        # BPR (docs/method.md §1.2): -log sigmoid(u·e_pos − u·e_neg), pair by pair
        diff = torch.einsum("md,mpd->mp", u, items[pos] - items[neg])
        loss = -F.logsigmoid(diff).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in record_at:
            out[step] = u.detach().numpy().copy()
    return out


def subsample_histories(histories: Sequence[np.ndarray], config: FoldInConfig) -> list[np.ndarray]:
    """``per_user`` random sub-samples (order kept) of each history, seeded."""
    rng = np.random.default_rng(config.seed)
    out = []
    for h in histories:
        for _ in range(config.per_user):
            keep = rng.uniform(config.keep_min, config.keep_max)
            n = max(1, int(round(keep * len(h))))
            out.append(h[np.sort(rng.choice(len(h), size=n, replace=False))])
    return out


# A model's exact representation for (users [M], histories [M]) -> [M, d], where it has one.
PartialReps = Callable[[np.ndarray, Sequence[np.ndarray]], "np.ndarray | None"]


def _relative_error(vecs: np.ndarray, real: np.ndarray) -> float:
    norms = np.maximum((real**2).sum(1), 1e-12)
    return float((((vecs - real) ** 2).sum(1) / norms).mean())


def fold_in_vectors(
    item_emb: np.ndarray,
    train_histories: Sequence[np.ndarray],
    train_vectors: np.ndarray,
    config: FoldInConfig | None = None,
    partial_reps: PartialReps | None = None,
    train_users: np.ndarray | None = None,
) -> FoldInResult:
    """Vectors of sub-sampled training histories (see the module doc).

    ``train_histories[j]`` is the training history of the user whose model vector is
    ``train_vectors[j]`` [d]; only TRAIN-side users may be passed. With ``partial_reps`` and
    ``train_users`` (the users' ids), the model computes each sub-sample's representation itself
    (LightGCN's propagation) and the BPR fold-in is not used; its "calibration error" is then
    the error of the model's own formula on the full histories (0 up to rounding).
    """
    config = config or FoldInConfig()
    keep = [j for j, h in enumerate(train_histories) if len(h) > 0]
    histories = [np.asarray(train_histories[j], dtype=np.int64) for j in keep]
    real = np.asarray(train_vectors, dtype=np.float32)[keep]
    if partial_reps is not None and train_users is not None:
        users = np.asarray(train_users)[keep]
        exact = partial_reps(users, [np.unique(h) for h in histories])
        if exact is not None:
            sampled = subsample_histories(histories, config)
            owners = np.repeat(users, config.per_user)
            vectors = partial_reps(owners, [np.unique(h) for h in sampled])
            assert vectors is not None
            return FoldInResult(
                vectors.astype(np.float32), 0, {0: _relative_error(exact, real)}, len(histories)
            )
    init = real.mean(0)
    full = fold_in(item_emb, histories, config, init, config.checkpoints)
    error = {steps: _relative_error(vecs, real) for steps, vecs in full.items()}
    steps = min(error, key=lambda s: error[s])
    sampled = subsample_histories(histories, config)
    vectors = fold_in(item_emb, sampled, config, init, (steps,))[steps]
    return FoldInResult(vectors.astype(np.float32), steps, error, len(histories))
