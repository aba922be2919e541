"""The one contract every recommender meets, its config, and the registry that fills itself.

score(u, i) = u · e_i, so the probe site (docs/method.md §1.3) is ``user_representation``: the
vector just before the prediction layer. Steering and SAE reconstruction only need
``user_representation`` and ``item_embeddings``.

Adding a recommender is one file in this package: a subclass of :class:`Recommender` with a
``name`` registers itself (``__init_subclass__``), carries its tuned ``defaults`` and, if it needs
fields the shared :class:`RecommenderConfig` lacks, its own ``config_class`` (a dataclass
subclassing it). The package imports every module in it, so the CLI and the pipeline see it.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from worker.data.dataset import Dataset
from worker.errors import UnknownRecommender

Batch = dict[str, torch.Tensor]


@dataclass
class RecommenderConfig:
    """The fields every recommender's training reads (a model may extend it: ``config_class``)."""

    emb_size: int = 64  # d, the probed dimension (paper §4: 64 for every model)
    lr: float = 1e-3  # Adam learning rate
    l2: float = 0.0  # Adam weight decay
    batch_size: int = 256  # training instances (pairs, windows or positions) per step
    epochs: int = 100  # upper bound; early stopping usually ends sooner
    patience: int = 10  # evaluations without a dev NDCG@10 gain before stopping
    eval_every: int = 1  # epochs between dev evaluations
    n_neg: int = 1  # sampled negatives per positive
    max_history: int = 20  # items of history a sequential model sees (paper: 20)
    dropout: float = 0.2  # embedding / attention / feed-forward dropout
    n_layers: int = 1  # SASRec blocks, LightGCN propagation layers
    n_heads: int = 1  # SASRec attention heads
    init_std: float = 0.01  # normal init of embedding tables
    loss: str = "bce"  # sequential models: "bce" or "bpr" against sampled negatives
    seed: int = 0  # torch and numpy seed; training is deterministic given it
    # torch intra-op threads; 0: from the cores other processes leave free, re-picked every
    # epoch (worker/threads.py). 2 on an idle 2-core machine: SASRec 6.4 s -> 4.1 s for 6 epochs.
    threads: int = 0


REGISTRY: dict[str, type[Recommender]] = {}


class Recommender(nn.Module, ABC):
    name: ClassVar[str]  # the registry key (``--recommender``); a subclass with one registers
    sequential: ClassVar[bool]  # does the representation depend on the history?
    probed: ClassVar[bool] = True  # False: a baseline whose representation says nothing
    config_class: ClassVar[type[RecommenderConfig]] = RecommenderConfig
    # Tuned values of ``config_class`` fields, applied before the run's overrides.
    defaults: ClassVar[dict[str, Any]] = {}
    # Draw the training batches on a background thread, a step ahead (worker/prefetch.py), with
    # one core of the free ones left to it: worth it where a batch costs a good part of a step.
    prefetch_batches: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return  # an abstract helper class: nothing to register
        taken = REGISTRY.get(name)
        if taken is not None and (taken.__module__, taken.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(f"recommender name {name!r} is taken by {taken.__qualname__}")
        REGISTRY[name] = cls

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.config: Any = config  # ``config_class``; typed Any so subclasses read their fields

    def prepare(self, dataset: Dataset) -> None:  # noqa: B027 - optional hook, no-op default
        """Set up state derived from the training data (popularity counts, a graph) before the
        first epoch; keep it in buffers so a saved model needs no dataset to load."""

    @abstractmethod
    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        """One epoch of training batches (negatives sampled with ``rng``).

        With ``prefetch_batches`` it runs on the batch producer's thread, a batch or two ahead of
        ``loss`` (``worker/prefetch.py``): then draw from torch's generator here only if ``loss``
        draws nothing from it (SASRec draws its dropout masks here), so the draws keep their
        order."""

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

    def report_extras(self) -> dict[str, Any]:
        """Entries the run report adds beside the metrics (an imported model: where it came
        from and the check of its vectors, docs/import.md); none by default."""
        return {}

    def partial_history_reps(
        self, users: np.ndarray, histories: Sequence[np.ndarray]
    ) -> np.ndarray | None:
        """[M, d] the representation user ``users[m]`` would get with only ``histories[m]`` as
        training items, where the model can say it exactly (LightGCN: its propagation); None
        where it cannot (then a BPR fold-in stands in; worker/sae/augment.py)."""
        return None


def recommender_class(name: str, *, what: str = "unknown recommender") -> type[Recommender]:
    """``REGISTRY[name]``, or an error naming what is registered."""
    if name not in REGISTRY:
        raise UnknownRecommender(f"{what} {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]
