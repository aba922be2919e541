"""MostPop: the popularity floor every model must beat (docs/method.md §1.2). A baseline, never
probed.

score(u, i) = training popularity of i for every user; to fit the contract the "representation"
is the constant 1-d vector [1] and the item "embedding" is the count, so rep · e_i = count(i).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender, RecommenderConfig


class MostPop(Recommender):
    popularity: torch.Tensor  # registered buffer: training interactions per item
    name = "mostpop"
    sequential = False
    defaults = {"epochs": 0}  # nothing to train
    probed = False  # its 1-d constant representation says nothing about the user

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__(n_users, n_items, config)
        self.register_buffer("popularity", torch.zeros(n_items))

    def prepare(self, dataset: Dataset) -> None:
        counts = np.bincount(dataset.train_pairs()[:, 1], minlength=self.n_items)
        self.popularity.copy_(torch.from_numpy(counts.astype(np.float32)))

    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        return iter(())  # nothing to learn: ``prepare`` counted everything

    def loss(self, batch: Batch) -> torch.Tensor:
        raise RuntimeError("MostPop has no parameters to train; call prepare(dataset) instead")

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return torch.ones(len(batch["user"]), 1)

    def item_embeddings(self) -> torch.Tensor:
        return self.popularity[:, None]
