"""SASRec (Kang & McAuley 2018): causal self-attention over the last ``max_history`` items.

Paper setting (docs/method.md §1.2): 1 layer, 1 head, history <= 20, learned positional embedding,
layer norm, dropout. Training predicts the next item at *every* position of a window of the training
sequence (causal mask), BCE against sampled negatives. Probe (docs/method.md §1.3): the final hidden
state at the last position, score(u, i) = h · e_i with the shared item embedding table.
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


class CausalBlock(nn.Module):
    """Pre-LN self-attention + point-wise feed-forward, as in the SASRec reference code."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d % n_heads:
            raise ValueError(f"emb_size {d} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.attn_norm = nn.LayerNorm(d, eps=1e-8)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d), nn.Dropout(dropout)
        )
        self.dropout = dropout

    def forward(self, x_BLD: torch.Tensor, allowed_B1LL: torch.Tensor) -> torch.Tensor:
        B, L, D = x_BLD.shape
        h = self.attn_norm(x_BLD)
        q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).unbind(2)
        att_BHLd = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=allowed_B1LL,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x_BLD = h + self.out(att_BHLd.transpose(1, 2).reshape(B, L, D))
        return x_BLD + self.ffn(self.ffn_norm(x_BLD))


class SASRec(Recommender):
    name = "sasrec"
    sequential = True
    # Tuned on ml-latest-small (601 users, seed 0, one thread): test NDCG@10 0.0581
    # [0.044, 0.073]; the epoch budget is sized for the 15-minute demo. docs/method.md §2: the
    # authors' SASRec stopped at epoch 12 on a noisy dev metric, hence a higher rate and more
    # patience: 3 evaluations 5 epochs apart (15 epochs without a gain; 6 before issue 12 — the
    # demo's dev NDCG gains at every evaluation up to its best, so the model is the same, and the
    # ML-1M shape stops 15 epochs sooner: docs/method.md §1.2).
    defaults = {
        "lr": 2e-3, "batch_size": 128, "epochs": 150, "patience": 3, "eval_every": 5,
        "dropout": 0.3, "n_neg": 16,
    }  # fmt: skip

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__(n_users, n_items, config)
        d, L = config.emb_size, config.max_history
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items)  # n_items = padding
        self.pos_emb = nn.Embedding(L, d)  # index 0 = the most recent item
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        nn.init.normal_(self.pos_emb.weight, std=config.init_std)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        self._known: KnownItems | None = None

    def encode(self, history_BL: torch.Tensor) -> torch.Tensor:
        """[B, L, d] hidden state after each position of a left-padded history."""
        B, L = history_BL.shape
        valid_BL = history_BL != self.n_items
        # Positions count back from the most recent item, so left padding does not shift them.
        pos_L = torch.arange(L - 1, -1, -1, device=history_BL.device)
        x_BLD = self.item_emb(history_BL) * self.config.emb_size**0.5 + self.pos_emb(pos_L)
        x_BLD = self.emb_dropout(x_BLD) * valid_BL[..., None]
        causal_LL = torch.ones(L, L, dtype=torch.bool, device=history_BL.device).tril()
        # A query sees earlier real items; a padding query sees itself only (no all -inf rows).
        allowed_BLL = (causal_LL & valid_BL[:, None, :]) | torch.eye(
            L, dtype=torch.bool, device=history_BL.device
        )
        for block in self.blocks:
            x_BLD = block(x_BLD, allowed_BLL[:, None]) * valid_BL[..., None]
        return self.final_norm(x_BLD)

    def prepare(self, dataset: Dataset) -> None:
        self._known = KnownItems(dataset)

    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        """Windows of the training sequences: ``history`` [B, L] and next items ``pos`` [B, L]
        (padding where there is no target), negatives ``neg`` [B, L, n_neg]. Window ends are
        shifted by a random offset each epoch so every position is seen with varied context."""
        if self._known is None:
            self.prepare(dataset)
        assert self._known is not None
        L, pad = self.config.max_history, self.n_items
        users, ends = [], []
        for u, seq in enumerate(dataset.sequences):
            m = len(seq) - 2  # training items; targets are seq[1:m]
            if m < 2:
                continue
            # Exclusive ends of each window's targets: m, then every L from a random shift back,
            # so consecutive windows touch or overlap and every target seq[1:m] is covered.
            shift = int(rng.integers(0, L))
            last = np.unique(np.concatenate([[m], np.arange(m - shift, 1, -L)]))
            users.extend([u] * len(last))
            ends.extend(last.tolist())
        order = rng.permutation(len(users))
        users_N, ends_N = np.asarray(users)[order], np.asarray(ends)[order]
        bs = self.config.batch_size
        for lo in range(0, len(users_N), bs):
            ub, eb = users_N[lo : lo + bs], ends_N[lo : lo + bs]
            hist_BL = np.full((len(ub), L), pad, dtype=np.int64)
            pos_BL = np.full((len(ub), L), pad, dtype=np.int64)
            for row, (u, e) in enumerate(zip(ub, eb, strict=True)):
                seq = dataset.sequences[int(u)]
                s = max(1, int(e) - L)
                pos_BL[row, L - (e - s) :] = seq[s:e]
                hist_BL[row, L - (e - s) :] = seq[s - 1 : e - 1]
            neg = sample_negatives(rng, self._known, ub, (len(ub), L, self.config.n_neg))
            yield {
                "user": torch.from_numpy(ub),
                "history": torch.from_numpy(hist_BL),
                "pos": torch.from_numpy(pos_BL),
                "neg": torch.from_numpy(neg),
            }

    def loss(self, batch: Batch) -> torch.Tensor:
        h_BLD = self.encode(batch["history"])
        target_BL = batch["pos"] != self.n_items
        h_ND = h_BLD[target_BL]
        pos_N = (h_ND * self.item_emb(batch["pos"][target_BL])).sum(-1)
        # multiply-and-sum: 2x faster than einsum's N tiny [1, d] x [d, K] products on CPU
        neg_NK = (h_ND[:, None, :] * self.item_emb(batch["neg"][target_BL])).sum(-1)
        return sequence_loss(self.config.loss, pos_N, neg_NK)

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.encode(batch["history"])[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items]


def _bce(pos_N: torch.Tensor, neg_NK: torch.Tensor) -> torch.Tensor:
    return -(F.logsigmoid(pos_N).mean() + F.logsigmoid(-neg_NK).mean(1).mean())


def _bpr(pos_N: torch.Tensor, neg_NK: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(pos_N[:, None] - neg_NK).mean()


SEQUENCE_LOSSES = {"bce": _bce, "bpr": _bpr}


def sequence_loss(name: str, pos_N: torch.Tensor, neg_NK: torch.Tensor) -> torch.Tensor:
    """Loss of positive scores [N] against sampled negative scores [N, K], by name."""
    if name not in SEQUENCE_LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(SEQUENCE_LOSSES)}")
    return SEQUENCE_LOSSES[name](pos_N, neg_NK)
