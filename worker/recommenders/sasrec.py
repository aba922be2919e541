"""SASRec (Kang & McAuley 2018): causal self-attention over the last ``max_history`` items.

Paper setting (docs/method.md §1.2): 1 layer, 1 head, history <= 20, learned positional embedding,
layer norm, dropout. Training predicts the next item at *every* position of a window of the training
sequence (causal mask), BCE against sampled negatives. Probe (docs/method.md §1.3): the final hidden
state at the last position, score(u, i) = h · e_i with the shared item embedding table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender, RecommenderConfig
from worker.recommenders.sampling import KnownItems, sample_negatives


def dropout_noise(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """The mask torch's CPU dropout draws for an input of ``shape``: bernoulli(1 - p) / (1 - p)
    from the default generator, so ``x * dropout_noise(x.shape, p)`` is ``F.dropout(x, p)`` bit for
    bit. Drawn apart from the forward, the masks of the next batch can be drawn on another core
    while this one trains (docs/method.md §1.2 "batch producer")."""
    noise = torch.empty(shape).bernoulli_(1 - p)
    return noise.div_(1 - p)


def attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with dropout, as torch computes it on the CPU (its math
    path: q and k each scaled by the square root of 1/sqrt(d), the mask added, a softmax that
    gives fully masked rows zeros, the dropout mask multiplied), with the mask passed in. Tested
    equal to it, outputs and gradients, bit for bit (tests/worker/test_sasrec_batches.py)."""
    scale = math.sqrt(1.0 / math.sqrt(q.shape[-1]))
    att = torch.matmul(q * scale, k.transpose(-2, -1) * scale) + bias
    return torch.matmul(torch._safe_softmax(att, -1) * noise, v)


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
        # Linear, ReLU, Dropout, Linear, Dropout: the dropouts are applied with drawn masks in
        # ``forward``; the modules stay so the saved weights keep their names (ffn.0, ffn.3).
        self.ffn = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d), nn.Dropout(dropout)
        )
        self.dropout = dropout

    def forward(
        self,
        x_BLD: torch.Tensor,
        allowed_B1LL: torch.Tensor,
        noise: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``noise``: this block's dropout masks (attention, feed-forward 1 and 2) while training
        with dropout; None otherwise."""
        B, L, D = x_BLD.shape
        h = self.attn_norm(x_BLD)
        q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if noise is None:
            att_BHLd = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed_B1LL)
        else:
            bias = torch.where(allowed_B1LL, 0.0, float("-inf"))
            att_BHLd = attention_with_dropout(q, k, v, bias, noise[0])
        x_BLD = h + self.out(att_BHLd.transpose(1, 2).reshape(B, L, D))
        linear1, relu, _, linear2, _ = self.ffn
        f_BLD = relu(linear1(self.ffn_norm(x_BLD)))
        if noise is not None:
            f_BLD = f_BLD * noise[1]
        f_BLD = linear2(f_BLD)
        if noise is not None:
            f_BLD = f_BLD * noise[2]
        return x_BLD + f_BLD


class SASRec(Recommender):
    name = "sasrec"
    sequential = True
    # Its batches carry the dropout masks, ~10 of a ~40 ms step at the ML-1M shape when drawn in
    # the forward: drawn on the producer thread, a step is one compute thread's ~34 ms (two
    # compute threads beside the producer ~40 ms, two without it ~37 ms: docs/method.md §1.2).
    prefetch_batches = True
    # Tuned on ml-latest-small (601 users, seed 0, one thread): test NDCG@10 0.0581
    # [0.044, 0.073]; the epoch budget is sized for the 15-minute demo. docs/method.md §2: the
    # authors' SASRec stopped at epoch 12 on a noisy dev metric, hence a higher rate and more
    # patience: 2 evaluations 5 epochs apart (10 epochs without a gain; 6 evaluations at first,
    # then 3). The demo's dev NDCG gains at every evaluation up to its best (epoch 40)
    # and the ML-1M shape's up to epoch 15, so both select the same model, 5 epochs sooner than
    # with 3 (docs/method.md §1.2).
    defaults = {
        "lr": 2e-3, "batch_size": 128, "epochs": 150, "patience": 2, "eval_every": 5,
        "dropout": 0.3, "n_neg": 16,
    }  # fmt: skip

    def __init__(self, n_users: int, n_items: int, config: RecommenderConfig) -> None:
        super().__init__(n_users, n_items, config)
        if not 0 <= config.dropout < 1:
            raise ValueError(f"SASRec's dropout must be in [0, 1), got {config.dropout}")
        d, L = config.emb_size, config.max_history
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items)  # n_items = padding
        self.pos_emb = nn.Embedding(L, d)  # index 0 = the most recent item
        self.blocks = nn.ModuleList(
            CausalBlock(d, config.n_heads, config.dropout) for _ in range(config.n_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        nn.init.normal_(self.pos_emb.weight, std=config.init_std)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        self._known: KnownItems | None = None

    def dropout_masks(self, batch_size: int) -> Batch:
        """The dropout masks of one training forward over ``batch_size`` windows, drawn in the
        order the forward applies them: the embeddings', then each block's attention and two
        feed-forward masks. Empty without dropout."""
        p, L, D = self.config.dropout, self.config.max_history, self.config.emb_size
        if p == 0:
            return {}
        masks = {"noise_emb": dropout_noise((batch_size, L, D), p)}
        for i in range(len(self.blocks)):
            masks[f"noise_attn_{i}"] = dropout_noise((batch_size, self.config.n_heads, L, L), p)
            masks[f"noise_ffn1_{i}"] = dropout_noise((batch_size, L, D), p)
            masks[f"noise_ffn2_{i}"] = dropout_noise((batch_size, L, D), p)
        return masks

    def encode(self, history_BL: torch.Tensor, masks: Batch | None = None) -> torch.Tensor:
        """[B, L, d] hidden state after each position of a left-padded history.

        While training with dropout, ``masks`` holds its masks (``dropout_masks``; the training
        batches carry them, drawn ahead by the batch producer); without them they are drawn here.
        """
        B, L = history_BL.shape
        valid_BL = history_BL != self.n_items
        if not self.training or self.config.dropout == 0:
            masks = None
        elif masks is None or "noise_emb" not in masks:
            masks = {key: m.to(history_BL.device) for key, m in self.dropout_masks(B).items()}
        # Positions count back from the most recent item, so left padding does not shift them.
        pos_L = torch.arange(L - 1, -1, -1, device=history_BL.device)
        x_BLD = self.item_emb(history_BL) * self.config.emb_size**0.5 + self.pos_emb(pos_L)
        if masks is not None:
            x_BLD = x_BLD * masks["noise_emb"]
        x_BLD = x_BLD * valid_BL[..., None]
        causal_LL = torch.ones(L, L, dtype=torch.bool, device=history_BL.device).tril()
        # A query sees earlier real items; a padding query sees itself only (no all -inf rows).
        allowed_BLL = (causal_LL & valid_BL[:, None, :]) | torch.eye(
            L, dtype=torch.bool, device=history_BL.device
        )
        for i, block in enumerate(self.blocks):
            noise = None
            if masks is not None:
                noise = tuple(masks[f"noise_{part}_{i}"] for part in ("attn", "ffn1", "ffn2"))
            x_BLD = block(x_BLD, allowed_BLL[:, None], noise) * valid_BL[..., None]
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
                **self.dropout_masks(len(ub)),  # drawn here, in the producer (train.py)
            }

    def loss(self, batch: Batch) -> torch.Tensor:
        h_BLD = self.encode(batch["history"], batch)
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
