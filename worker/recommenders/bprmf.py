"""BPRMF (Rendle et al. 2009): user and item embeddings, BPR loss on sampled negatives.

Probe (docs/method.md §1.3): the user embedding itself, score(u, i) = p_u · q_i.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender, RecommenderConfig
from worker.recommenders.sampling import KnownItems, sample_negatives


def bpr_loss(pos_B: torch.Tensor, neg_BK: torch.Tensor) -> torch.Tensor:
    """Mean over the batch and the K negatives of -log sigmoid(s_pos - s_neg)."""
    return -F.logsigmoid(pos_B[:, None] - neg_BK).mean()


def pair_batches(
    dataset: Dataset, rng: np.random.Generator, batch_size: int, n_neg: int, known: KnownItems
) -> Iterator[Batch]:
    """One epoch of shuffled (user, pos, neg [n_neg]) training triples for the non-sequential
    models; negatives are uniform over items the user has not interacted with in train."""
    pairs_N2 = dataset.train_pairs()[rng.permutation(len(dataset.train_pairs()))]
    for lo in range(0, len(pairs_N2), batch_size):
        users, pos = pairs_N2[lo : lo + batch_size, 0], pairs_N2[lo : lo + batch_size, 1]
        neg = sample_negatives(rng, known, users, (len(users), n_neg))
        yield {
            "user": torch.from_numpy(users),
            "pos": torch.from_numpy(pos),
            "neg": torch.from_numpy(neg),
        }


class BPRMF(Recommender):
    name = "bprmf"
    sequential = False
    # Tuned on ml-latest-small (601 users, seed 0, one thread): test NDCG@10 0.0276
    # [0.019, 0.039] (MostPop 0.0235).
    defaults = {
        "lr": 5e-3, "l2": 1e-6, "batch_size": 1024, "epochs": 40, "patience": 6, "eval_every": 2,
        "init_std": 0.1,
    }  # fmt: skip

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__(n_users, n_items, config)
        self.user_emb = nn.Embedding(n_users, config.emb_size)
        self.item_emb = nn.Embedding(n_items, config.emb_size)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        self._known: KnownItems | None = None

    def prepare(self, dataset: Dataset) -> None:
        self._known = KnownItems(dataset)

    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        if self._known is None:
            self.prepare(dataset)
        assert self._known is not None
        return pair_batches(dataset, rng, self.config.batch_size, self.config.n_neg, self._known)

    def loss(self, batch: Batch) -> torch.Tensor:
        u_BD = self.user_emb(batch["user"])
        pos_BD, neg_BKD = self.item_emb(batch["pos"]), self.item_emb(batch["neg"])
        pos_B = (u_BD * pos_BD).sum(-1)
        neg_BK = torch.einsum("bd,bkd->bk", u_BD, neg_BKD)
        return bpr_loss(pos_B, neg_BK)

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.user_emb(batch["user"])

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight
