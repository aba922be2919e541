"""The one contract every recommender meets, and the registry that maps names to classes.

score(u, i) = u · e_i, so the probe site (SPEC §1.3) is ``user_representation``: the vector just
before the prediction layer. Steering and SAE reconstruction only need
``user_representation`` and ``item_embeddings``.

Batches are dicts of tensors:
- ``user``: [B] int64 internal user ids.
- ``history``: [B, L] int64 item ids, *left*-padded with ``n_items`` (the padding id), most
  recent item last; ``L`` is the model's ``max_history``.
- ``length``: [B] int64 number of real items in ``history`` (before truncation to ``L``).
- training batches add what ``loss`` needs (``pos`` [B], ``neg`` [B, n_neg], ...), built by the
  model's own ``training_batches``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from worker.data.dataset import Dataset

Batch = dict[str, torch.Tensor]


class Recommender(nn.Module, ABC):
    name: ClassVar[str]
    sequential: ClassVar[bool]  # does the representation depend on the history?

    def __init__(self, n_users: int, n_items: int, config: Any) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.config = config

    def prepare(self, dataset: Dataset) -> None:  # noqa: B027 - optional hook, no-op default
        """Set up state derived from the training data (popularity counts, a graph) before the
        first epoch; keep it in buffers so a saved model needs no dataset to load."""

    @abstractmethod
    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        """One epoch of training batches (negatives sampled with ``rng``)."""

    @abstractmethod
    def loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss of one batch."""

    @abstractmethod
    def user_representation(self, batch: Batch) -> torch.Tensor:
        """[B, d] the probe site."""

    @abstractmethod
    def item_embeddings(self) -> torch.Tensor:
        """[n_items, d] the vectors a representation is scored against."""

    def score(self, rep_BD: torch.Tensor) -> torch.Tensor:
        """[B, n_items] scores of every item."""
        return rep_BD @ self.item_embeddings().T


REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    REGISTRY[cls.name] = cls
    return cls
