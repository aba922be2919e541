"""Training a TopK SAE on probed user representations (paper §3.2.3, eq. 3; docs/method.md §1.4).

The trainer owns what the module does not: the Adam optimiser (no weight decay: docs/method.md §3
lists the authors' weight decay on SAE weights as a fault), the dead-latent counters, the AuxK loss,
the decoder-norm constraint, and model selection on the DEV side.

Loss (eq. 3, both terms normalised by var(x), the mean squared distance of a training vector
from the training mean, so the main term is the batch FVU):

    loss = ||x - x_hat||^2 / var(x) + alpha * ||e - e_hat||^2 / var(x),  e = (x - x_hat).detach()

where e_hat decodes (without b_dec) the top ``k_aux`` pre-activations among dead latents.

Model selection (docs/method.md §1.4 "select on dev FVU and dev NDCG of the reconstructed model"):
the dev side is evaluated every ``eval_every`` epochs. Without a ``dev_score_fn`` the checkpoint
with the lowest dev FVU wins. With one (higher is better, e.g. dev NDCG@10 with x replaced by
x_hat) the winner is the lowest dev FVU among checkpoints not vetoed by the score. The veto
(docs/method.md §1.4): when ``dev_score_fn`` returns per-case scores and ``score_tolerance`` is
None, a checkpoint is vetoed when its mean score is below the best checkpoint's by more than the
95% half-width of their *paired* per-case difference, ``1.96 · sd(best_i − c_i) / √n`` -- a
tolerance that scales with each model's own noise, so it can veto on every model (the base
model's CI half-width it replaces exceeded BPRMF's whole dev NDCG). A number in
``score_tolerance`` is a fixed tolerance on the mean instead. Only the Pareto front (no other
checkpoint has both lower FVU and higher score) can ever win, so only it is kept in memory.
Training stops after ``patience`` evaluations that improved neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worker.device import CPU
from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu, l0
from worker.sae.model import TopKSAE
from worker.sae.selection import _Checkpoint, _Selection, _update_front, paired_tolerance
from worker.threads import governor

__all__ = [
    "SAEConfig",
    "_Checkpoint",
    "_Selection",
    "_update_front",
    "encode_batched",
    "paired_tolerance",
    "train_sae",
]


@dataclass
class SAEConfig:
    """Hyper-parameters of one SAE run; saved beside the weights (``worker.sae.io``)."""

    scale: int = 16  # s: n_latents = scale * d_in (paper §3.2.2)
    k: int = 8  # active latents per input (paper eq. 2)
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 4096  # training vectors per step (capped at the training-set size)
    max_epochs: int = 1000  # upper bound on passes over the training vectors
    max_steps: int | None = None  # optional upper bound on optimiser steps
    aux_alpha: float = 1 / 32  # alpha of eq. 3
    k_aux: int | None = None  # dead latents the AuxK loss decodes; None -> d_in // 2
    dead_window: int | None = None  # training inputs without firing => dead; None -> 2 epochs
    seed: int = 0  # init, shuffling
    # torch threads; 0: from the cores other processes leave free, re-picked every epoch
    # (worker/threads.py: two threads beside busy processes trained 5-10x slower than one).
    threads: int = 0
    eval_every: int = 1  # epochs between dev evaluations
    patience: int = 30  # evaluations without a better dev FVU or score before stopping
    # None: the paired 95% half-width of the per-case score difference to the best checkpoint
    # (dev_score_fn returns per-case scores); a number: a fixed tolerance on the mean score
    score_tolerance: float | None = None
    eval_batch_size: int = 16384  # vectors per forward pass when evaluating

    def validate(self) -> None:
        """Raise on values that would make training silently meaningless."""
        if self.threads < 0:
            raise ValueError(f"SAEConfig.threads must be >= 0 (0: automatic), got {self.threads}")
        for name in ("scale", "k", "batch_size", "max_epochs", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SAEConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.aux_alpha < 0 or self.patience < 1:
            raise ValueError(
                f"SAEConfig needs lr > 0, aux_alpha >= 0, patience >= 1; got lr={self.lr}, "
                f"aux_alpha={self.aux_alpha}, patience={self.patience}"
            )


def aux_loss(
    sae: TopKSAE,
    x_BD: torch.Tensor,
    pre_BN: torch.Tensor,
    residual_BD: torch.Tensor,
    dead_N: torch.Tensor,
    k_aux: int,
    x_var: float,
) -> torch.Tensor:
    """AuxK term of eq. 3: decode the top ``k_aux`` dead pre-activations, regress the residual.

    pre_BN [B, n]: the (no-grad) pre-activations used for selection. residual_BD [B, d]: the
    detached e = x - x_hat. dead_N [n] bool. Its gradient reaches only dead latents' encoder
    columns and decoder rows (plus b_dec through the encoder input). Zero when none is dead.
    """
    dead_idx = dead_N.nonzero().squeeze(-1)
    if dead_idx.numel() == 0:
        return x_BD.new_zeros(())
    # The dead latents' pre-activations and decode as two small dense products over the M dead
    # columns ([B, d] x [d, M], [B, M] x [M, d]) instead of gathering B x k_aux encoder columns and
    # decoder rows: the same values and gradients, and 2-3x cheaper on CPU (at 21% dead latents
    # the gathers made a step 99-110 ms, now 38-41; 23-26 with none dead).
    with torch.no_grad():  # the selection: top-k over the dead columns only
        top_BA = (
            pre_BN.index_select(1, dead_idx)
            .topk(min(k_aux, dead_idx.numel()), dim=-1, sorted=False)
            .indices
        )
    pre_BM = (x_BD - sae.b_dec) @ sae.W_enc.index_select(1, dead_idx) + sae.b_enc[dead_idx]
    val_BA = torch.relu(pre_BM.gather(1, top_BA))
    codes_BM = torch.zeros_like(pre_BM).scatter(1, top_BA, val_BA)
    e_hat_BD = codes_BM @ sae.W_dec.index_select(0, dead_idx)
    return ((residual_BD - e_hat_BD) ** 2).sum(-1).mean() / x_var


class SAETrainer:
    """One SAE, its optimiser and its dead-latent counters; ``step`` is one update."""

    def __init__(self, sae: TopKSAE, config: SAEConfig, x_var: float, dead_window: int) -> None:
        if x_var <= 0:
            raise ValueError(f"training vectors have zero variance (var={x_var})")
        self.sae = sae
        self.config = config
        self.x_var = x_var
        self.dead_window = dead_window
        self.k_aux = config.k_aux if config.k_aux is not None else sae.d_in // 2
        self.optimizer = torch.optim.Adam(
            sae.parameters(), lr=config.lr, weight_decay=0.0, fused=True
        )
        # training inputs seen since each latent last fired (docs/method.md §1.4 "last window")
        self.inputs_since_fired_N = torch.zeros(
            sae.n_latents, dtype=torch.int64, device=sae.b_dec.device
        )

    def dead_mask(self) -> torch.Tensor:
        """[n] bool: latents that have not fired in the last ``dead_window`` training inputs."""
        return self.inputs_since_fired_N >= self.dead_window

    def losses(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(recon, aux, fired) for one batch [B, d]: the two normalised loss terms of eq. 3
        (with gradients) and the flat int64 indices of the latents that fired (value > 0)."""
        sae = self.sae
        with torch.no_grad():
            pre_BN = sae.pre_acts(x_BD)
            idx_BK = pre_BN.topk(sae.k, dim=-1, sorted=False).indices
        val_BK = torch.relu(sae.pre_acts_at(x_BD, idx_BK))
        x_hat_BD = sae.decode_sparse(idx_BK, val_BK)
        residual_BD = x_BD - x_hat_BD
        recon = (residual_BD**2).sum(-1).mean() / self.x_var
        if self.config.aux_alpha > 0:
            aux = aux_loss(
                sae, x_BD, pre_BN, residual_BD.detach(), self.dead_mask(), self.k_aux, self.x_var
            )
        else:
            aux = x_BD.new_zeros(())
        fired_BK = val_BK.detach() > 0
        return recon, aux, idx_BK[fired_BK]

    def step(self, x_BD: torch.Tensor) -> tuple[float, float]:
        """One Adam step on a batch [B, d]; returns (recon, aux) loss values."""
        recon, aux, fired_idx = self.losses(x_BD)
        loss = recon + self.config.aux_alpha * aux
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        remove_parallel_grad(self.sae)
        self.optimizer.step()
        normalise_decoder(self.sae)
        self.inputs_since_fired_N += x_BD.shape[0]
        self.inputs_since_fired_N[fired_idx] = 0
        return recon.item(), aux.item()


@torch.no_grad()
def remove_parallel_grad(sae: TopKSAE) -> None:
    """Drop the part of each decoder row's gradient parallel to the row (docs/method.md §1.4): with
    unit rows, that part would only change the norm, which the renormalisation undoes anyway."""
    grad = sae.W_dec.grad
    if grad is None:
        return
    w_ND = sae.W_dec
    grad -= (grad * w_ND).sum(-1, keepdim=True) * w_ND


@torch.no_grad()
def normalise_decoder(sae: TopKSAE) -> None:
    """Renormalise every decoder row to unit norm (after every step, docs/method.md §1.4 and §3)."""
    sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))


@torch.inference_mode()
def encode_batched(
    sae: TopKSAE, x_ND: np.ndarray | torch.Tensor, batch_size: int = 16384
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes and reconstructions of many vectors: (idx [N, k] int64, val [N, k], x_hat [N, d])."""
    x = torch.as_tensor(x_ND, dtype=torch.float32)
    idx, val, x_hat = [], [], []
    for start in range(0, x.shape[0], batch_size):
        i_BK, v_BK = sae.encode(x[start : start + batch_size])
        idx.append(i_BK)
        val.append(v_BK)
        x_hat.append(sae.decode_sparse(i_BK, v_BK))
    if not idx:
        raise ValueError("encode_batched got no vectors")
    return torch.cat(idx).numpy(), torch.cat(val).numpy(), torch.cat(x_hat).numpy()


def _check_vectors(name: str, x: np.ndarray, d: int | None = None) -> torch.Tensor:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be [N, d] with N >= 2, got shape {x.shape}")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{name} has d={x.shape[1]}, expected {d} like x_train")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return torch.as_tensor(x, dtype=torch.float32)


def init_sae(x_train_ND: torch.Tensor, config: SAEConfig) -> TopKSAE:
    """A fresh SAE for these training vectors: n = scale * d latents, b_dec = their mean
    (docs/method.md §1.4), weights from ``config.seed``."""
    d_in = x_train_ND.shape[1]
    return TopKSAE(d_in, config.scale * d_in, config.k, b_dec=x_train_ND.mean(0), seed=config.seed)


def _run_epoch(
    trainer: SAETrainer,
    x_steps: torch.Tensor,
    gen: torch.Generator,
    batch: int,
    max_steps: int | None,
    steps: int,
) -> tuple[int, int]:
    """One shuffled pass of steps over ``x_steps`` (on its device), stopping at ``max_steps``;
    returns (steps so far, vectors seen in this pass)."""
    trainer.sae.train()
    n_train, vectors = len(x_steps), 0
    perm = torch.randperm(n_train, generator=gen).to(x_steps.device)
    for start in range(0, n_train, batch):
        trainer.step(x_steps[perm[start : start + batch]])
        steps += 1
        vectors += min(batch, n_train - start)
        if max_steps is not None and steps >= max_steps:
            break
    return steps, vectors


def train_sae(
    x_train: np.ndarray,
    x_dev: np.ndarray,
    config: SAEConfig | None = None,
    dev_score_fn: Callable[[TopKSAE], float | np.ndarray] | None = None,
    progress: bool = True,
    device: torch.device = CPU,
) -> tuple[TopKSAE, dict[str, Any]]:
    """Train a TopK SAE on x_train [N, d], select it on x_dev [M, d]; return (sae, report).

    The steps run on ``device``, dev evaluations on the CPU (worker/device.py); the SAE returned
    is on the CPU.

    ``dev_score_fn(sae)`` (higher is better; a number, or per-case scores for the paired veto)
    joins model selection when given. Report: fvu_train, fvu_dev, dead_fraction (latents that
    never fire on the whole training set, after training), l0, steps, epochs, best_epoch,
    train_seconds (training steps only), vectors_per_second, dev_score, the veto, history.
    """
    config = config or SAEConfig()
    config.validate()
    x_tr = _check_vectors("x_train", x_train)
    x_dv = _check_vectors("x_dev", x_dev, x_tr.shape[1])
    n_train = x_tr.shape[0]
    previous_threads = torch.get_num_threads()
    threads = governor(config.threads)
    try:
        torch.manual_seed(config.seed)
        sae = init_sae(x_tr, config).to(device)
        x_steps = x_tr.to(device)
        x_var = float(((x_tr - x_tr.mean(0)) ** 2).sum(-1).mean())
        dead_window = config.dead_window if config.dead_window is not None else 2 * n_train
        trainer = SAETrainer(sae, config, x_var, dead_window)
        batch = min(config.batch_size, n_train)
        gen = torch.Generator().manual_seed(config.seed)
        selection = _Selection(config.score_tolerance)
        steps, vectors, train_seconds, epoch = 0, 0, 0.0, 0
        bar = tqdm(range(1, config.max_epochs + 1), disable=not progress, desc="SAE", unit="ep")
        for epoch in bar:
            threads.update()
            t0 = time.perf_counter()
            steps, seen = _run_epoch(trainer, x_steps, gen, batch, config.max_steps, steps)
            vectors += seen
            train_seconds += time.perf_counter() - t0
            out_of_steps = config.max_steps is not None and steps >= config.max_steps
            if epoch % config.eval_every and epoch != config.max_epochs and not out_of_steps:
                continue
            sae.eval().to(CPU)
            fvu_dev = fvu(x_dv.numpy(), encode_batched(sae, x_dv, config.eval_batch_size)[2])
            score = dev_score_fn(sae) if dev_score_fn is not None else None
            selection.observe(sae, epoch, steps, fvu_dev, score)
            sae.to(device)
            bar.set_postfix(fvu_dev=f"{fvu_dev:.4f}", best=f"{selection.best_fvu:.4f}")
            if selection.stale >= config.patience or out_of_steps:
                break
        bar.close()

        best = min(selection.front, key=lambda c: c.fvu_dev)  # the front holds eligible ones
        sae.to(CPU).load_state_dict(best.state)
        sae.eval()
        idx_tr, val_tr, x_hat_tr = encode_batched(sae, x_tr, config.eval_batch_size)
        report = {
            "fvu_train": fvu(x_tr.numpy(), x_hat_tr),
            "fvu_dev": best.fvu_dev,
            **selection.veto_report(best, scored=dev_score_fn is not None),
            "dead_fraction": dead_fraction(fire_counts(idx_tr, val_tr, sae.n_latents)),
            "l0": l0(val_tr),
            "n_latents": sae.n_latents,
            "k_aux": trainer.k_aux,
            "dead_window": dead_window,
            "batch_size": batch,
            "steps": steps,
            "epochs": epoch,
            "best_epoch": best.epoch,
            "train_seconds": train_seconds,
            "vectors_per_second": vectors / train_seconds if train_seconds > 0 else float("nan"),
            "threads": threads.history,  # torch threads per epoch (worker/threads.py)
            "history": selection.history,
        }
        return sae, report
    finally:
        torch.set_num_threads(previous_threads)
