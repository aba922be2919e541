"""TiMiRec (Wang et al. 2022, "Target Interest Distillation for Multi-Interest Recommendation").

Two parts, trained jointly here (the paper pre-trains the first, then fine-tunes both):
- a self-attentive multi-interest extractor (ComiRec-SA): K interest vectors from the last
  ``max_history`` items, A = softmax_L(W2 tanh(W1 (H + P))), interests = Aᵀ H  -> [B, K, d];
- an intent predictor: a GRU over the history and a linear layer -> logits over the K interests.
Training: the recommendation loss on the intent-weighted interest vector, the extractor's own
loss on the interest closest to the target (ComiRec's hard selection), and the target-interest
distillation KL(softmax(interests · e_target / τ) || softmax(intent logits)) weighted by α.
Probe (docs/method.md §1.3): the intent-weighted interest vector, Σ_k softmax(intent)_k ·
interest_k.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worker.data.dataset import Dataset
from worker.recommenders.base import Batch, Recommender, RecommenderConfig
from worker.recommenders.sampling import (
    KnownItems,
    history_matrix,
    position_instances,
    sample_negatives,
)
from worker.recommenders.sasrec import sequence_loss


@dataclass
class TiMiRecConfig(RecommenderConfig):
    """The shared fields plus TiMiRec's own."""

    n_interests: int = 4  # K interests
    attn_size: int = 8  # hidden size of the self-attentive extractor
    temperature: float = 1.0  # softmax temperature of the target-interest teacher
    distill_weight: float = 0.1  # α of the distillation KL


class TiMiRec(Recommender):
    name = "timirec"
    sequential = True
    config_class = TiMiRecConfig
    defaults = {
        "lr": 2e-3, "batch_size": 256, "epochs": 40, "patience": 5, "eval_every": 2,
        "dropout": 0.2, "n_neg": 8,
    }  # fmt: skip

    def __init__(self, n_users: int, n_items: int, config: TiMiRecConfig) -> None:
        super().__init__(n_users, n_items, config)
        d, L, K = config.emb_size, config.max_history, config.n_interests
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items)
        self.pos_emb = nn.Embedding(L, d)  # index 0 = the most recent item
        self.attn_in = nn.Linear(d, config.attn_size)  # W1
        self.attn_out = nn.Linear(config.attn_size, K)  # W2
        self.intent_gru = nn.GRU(d, d, batch_first=True)
        self.intent_out = nn.Linear(d, K)
        self.dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        nn.init.normal_(self.pos_emb.weight, std=config.init_std)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        self._known: KnownItems | None = None

    def interests_and_intent(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(interests [B, K, d], intent logits [B, K]) of a left-padded history batch."""
        history_BL = batch["history"]
        B, L = history_BL.shape
        valid_BL = history_BL != self.n_items
        n_B = valid_BL.sum(1)
        if (n_B == 0).any():
            raise ValueError("TiMiRec needs at least one history item per case")
        h_BLD = self.dropout(self.item_emb(history_BL))
        pos_L = torch.arange(L - 1, -1, -1, device=history_BL.device)
        logits_BLK = self.attn_out(torch.tanh(self.attn_in(h_BLD + self.pos_emb(pos_L))))
        logits_BLK = logits_BLK.masked_fill(~valid_BL[..., None], -torch.inf)
        interests_BKD = torch.einsum("blk,bld->bkd", logits_BLK.softmax(1), h_BLD)
        # The GRU reads only the real items: rotate left padding to the right, then pack.
        idx_BL = (torch.arange(L, device=history_BL.device)[None, :] + (L - n_B)[:, None]) % L
        packed = nn.utils.rnn.pack_padded_sequence(
            h_BLD.gather(1, idx_BL[..., None].expand_as(h_BLD)),
            n_B.cpu(),
            batch_first=True,
            enforce_sorted=False,
        )
        _, last_1BD = self.intent_gru(packed)
        return interests_BKD, self.intent_out(last_1BD[0])

    @staticmethod
    def _weighted(interests_BKD: torch.Tensor, intent_BK: torch.Tensor) -> torch.Tensor:
        return (intent_BK.softmax(-1)[..., None] * interests_BKD).sum(1)

    def prepare(self, dataset: Dataset) -> None:
        self._known = KnownItems(dataset)

    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        """Every training position is one instance: history (<= max_history) -> next item."""
        if self._known is None:
            self.prepare(dataset)
        assert self._known is not None
        users_N, lengths_N = position_instances(dataset)
        order = rng.permutation(len(users_N))
        users_N, lengths_N = users_N[order], lengths_N[order]
        bs = self.config.batch_size
        for lo in range(0, len(users_N), bs):
            ub, nb = users_N[lo : lo + bs], lengths_N[lo : lo + bs]
            pos = np.array([dataset.sequences[int(u)][int(n)] for u, n in zip(ub, nb, strict=True)])
            yield {
                "user": torch.from_numpy(ub),
                "history": torch.from_numpy(
                    history_matrix(dataset, ub, nb, self.config.max_history)
                ),
                "length": torch.from_numpy(nb),
                "pos": torch.from_numpy(pos.astype(np.int64)),
                "neg": torch.from_numpy(
                    sample_negatives(rng, self._known, ub, (len(ub), self.config.n_neg))
                ),
            }

    def loss(self, batch: Batch) -> torch.Tensor:
        interests_BKD, intent_BK = self.interests_and_intent(batch)
        pos_BD, neg_BND = self.item_emb(batch["pos"]), self.item_emb(batch["neg"])
        target_BK = torch.einsum("bkd,bd->bk", interests_BKD, pos_BD)

        def rec(u_BD: torch.Tensor) -> torch.Tensor:
            neg_BN = torch.einsum("bd,bnd->bn", u_BD, neg_BND)
            return sequence_loss(self.config.loss, (u_BD * pos_BD).sum(-1), neg_BN)

        selected_BD = interests_BKD[
            torch.arange(len(target_BK), device=target_BK.device), target_BK.argmax(-1)
        ]
        teacher_BK = (target_BK.detach() / self.config.temperature).softmax(-1)
        distill = F.kl_div(intent_BK.log_softmax(-1), teacher_BK, reduction="batchmean")
        return (
            rec(self._weighted(interests_BKD, intent_BK))
            + rec(selected_BD)
            + self.config.distill_weight * distill
        )

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self._weighted(*self.interests_and_intent(batch))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items]
