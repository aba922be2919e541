"""LightGCN (He et al. 2020): embeddings smoothed over the user-item graph, BPR loss.

E^(l+1) = Â E^(l) with Â = D^-1/2 A D^-1/2 over TRAIN interactions only (dev/test edges would
leak the targets); the final embedding is the mean of layers 0..n_layers. Probe (docs/method.md
§1.3): the propagated user embedding; items are scored against the propagated item embeddings.
The training edges live in a buffer, so a saved model rebuilds its graph without the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender, RecommenderConfig
from worker.recommenders.bprmf import bpr_loss, pair_batches
from worker.recommenders.sampling import KnownItems


class LightGCN(Recommender):
    name = "lightgcn"
    sequential = False
    # Tuned on ml-latest-small (601 users, seed 0, one thread): test NDCG@10 0.0262
    # [0.018, 0.037] (MostPop 0.0235).
    defaults = {
        "lr": 5e-3, "l2": 1e-6, "batch_size": 1024, "epochs": 40, "patience": 6, "eval_every": 2,
        "n_layers": 3, "init_std": 0.1,
    }  # fmt: skip

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__(n_users, n_items, config)
        self.user_emb = nn.Embedding(n_users, config.emb_size)
        self.item_emb = nn.Embedding(n_items, config.emb_size)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        self.register_buffer("edges", torch.zeros(2, 0, dtype=torch.long))  # [2, E] (user, item)
        self._adj: torch.Tensor | None = None  # sparse [U+I, U+I], built from ``edges``
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None  # eval-mode propagation
        self._known: KnownItems | None = None

    # -- graph ---------------------------------------------------------------------------------
    def prepare(self, dataset: Dataset) -> None:
        pairs_N2 = np.unique(dataset.train_pairs(), axis=0)
        self.edges = torch.from_numpy(pairs_N2.T.copy())
        self._adj, self._cache = None, None
        self._known = KnownItems(dataset)

    def _adjacency(self) -> torch.Tensor:
        if self._adj is None:
            if self.edges.shape[1] == 0:
                raise RuntimeError("LightGCN has no graph: call prepare(dataset) or load weights")
            n = self.n_users + self.n_items
            u, i = self.edges[0], self.edges[1] + self.n_users
            rows, cols = torch.cat([u, i]), torch.cat([i, u])
            deg_N = torch.bincount(rows, minlength=n).float().clamp(min=1)
            vals = deg_N[rows].rsqrt() * deg_N[cols].rsqrt()
            self._adj = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), vals, (n, n), check_invariants=True
            ).coalesce()
        return self._adj

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "edges"
        if key in state_dict:  # the graph's size is only known from the saved edges
            self.edges = torch.empty_like(state_dict[key])
        self._adj, self._cache = None, None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):
        self._adj, self._cache = None, None  # rebuilt on the new device (worker/device.py)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> LightGCN:
        self._cache = None  # weights may change in train mode; recompute after
        return super().train(mode)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [U, d], items [I, d]): mean of layers 0..n_layers; cached in eval mode."""
        if not self.training and self._cache is not None:
            return self._cache
        adj = self._adjacency()
        e_ND = torch.cat([self.user_emb.weight, self.item_emb.weight])
        total_ND = e_ND
        for _ in range(self.config.n_layers):
            e_ND = torch.sparse.mm(adj, e_ND)
            total_ND = total_ND + e_ND
        mean_ND = total_ND / (self.config.n_layers + 1)
        users_UD, items_ID = mean_ND[: self.n_users], mean_ND[self.n_users :]
        if not self.training:
            self._cache = (users_UD.detach(), items_ID.detach())
        return users_UD, items_ID

    # -- contract ------------------------------------------------------------------------------
    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        if self._known is None or self.edges.shape[1] == 0:
            self.prepare(dataset)
        assert self._known is not None
        return pair_batches(dataset, rng, self.config.batch_size, self.config.n_neg, self._known)

    def loss(self, batch: Batch) -> torch.Tensor:
        users_UD, items_ID = self.propagate()
        u_BD = users_UD[batch["user"]]
        pos_B = (u_BD * items_ID[batch["pos"]]).sum(-1)
        neg_BK = torch.einsum("bd,bkd->bk", u_BD, items_ID[batch["neg"]])
        return bpr_loss(pos_B, neg_BK)

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.propagate()[0][batch["user"]]

    def item_embeddings(self) -> torch.Tensor:
        return self.propagate()[1]

    @torch.no_grad()
    def partial_history_reps(
        self, users: np.ndarray, histories: Sequence[np.ndarray]
    ) -> np.ndarray:
        """LightGCN's own propagation for a user whose training items were only ``histories[m]``:
        layer 0 is the user's embedding, layer l+1 = Σ_{i∈H} e_i^(l) / sqrt(|H| · deg_i) with the
        items' layers from the trained graph, the representation the mean of layers 0..L (the
        module doc's formula, the user's row of Â restricted to H)."""
        adj = self._adjacency()
        e_ND = torch.cat([self.user_emb.weight, self.item_emb.weight])
        item_layers = []
        for _ in range(self.config.n_layers):
            item_layers.append(e_ND[self.n_users :])
            e_ND = torch.sparse.mm(adj, e_ND)
        deg_I = torch.bincount(self.edges[1], minlength=self.n_items).float().clamp(min=1)
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.float32)
        flat = torch.as_tensor(np.concatenate(histories), dtype=torch.long)
        rows = torch.repeat_interleave(torch.arange(len(histories)), lengths.long())
        weight = (lengths[rows].clamp(min=1) * deg_I[flat]).rsqrt()[:, None]  # [nnz, 1]
        total = self.user_emb.weight[torch.as_tensor(users, dtype=torch.long)].clone()
        for layer in item_layers:
            total.index_add_(0, rows, weight * layer[flat])
        return (total / (self.config.n_layers + 1)).numpy()
