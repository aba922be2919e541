"""What a trained SAE is compared against (docs/method.md §1.4, §1.9): PCA with k components, a
randomly initialised SAE, a dense autoencoder with 8 hidden units (paper Table 7 "AE"), and the (s,
k) sensitivity sweep (paper §7, Figures 7/8).

docs/method.md §2 warns that reconstructed NDCG of a *random* SAE is already close to the base model
and that training FVU says nothing on small data; so every figure here is measured on vectors the
model never trained on.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu
from worker.sae.model import TopKSAE
from worker.sae.train import SAEConfig, encode_batched, train_sae


def pca_fvu(x_train: np.ndarray, x_eval: np.ndarray, k: int) -> float:
    """FVU on x_eval [M, d] of its projection on the top ``k`` principal components of x_train
    [N, d] (the linear baseline with as many numbers per input as the SAE's k latents)."""
    x_train, x_eval = np.asarray(x_train, np.float64), np.asarray(x_eval, np.float64)
    if not 0 < k <= min(x_train.shape):
        raise ValueError(f"k must be in 1..min(N, d)={min(x_train.shape)}, got {k}")
    # the d x d covariance's eigenvectors: the same components as a full SVD of the [N, d] data,
    # 0.1 s instead of 5.6 s for SASRec's 982k positions at the ML-1M shape
    pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(x_train)
    return fvu(x_eval, pca.inverse_transform(pca.transform(x_eval)))


def random_sae(d_in: int, n_latents: int, k: int, b_dec: np.ndarray, seed: int = 0) -> TopKSAE:
    """An untrained TopKSAE initialised exactly like a trained one (b_dec = the data mean)."""
    return TopKSAE(
        d_in, n_latents, k, b_dec=torch.as_tensor(b_dec, dtype=torch.float32), seed=seed
    ).eval()


class DenseAE(nn.Module):
    """Dense autoencoder x_hat = W_dec ReLU(W_enc (x - b_dec) + b_enc) + b_dec: Table 7's "AE",
    the SAE without sparsity and with ``hidden`` (8) units, i.e. the same code size as k = 8."""

    def __init__(self, d_in: int, hidden: int, b_dec: torch.Tensor | None = None) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, hidden)
        self.decoder = nn.Linear(hidden, d_in, bias=False)
        self.b_dec = nn.Parameter(b_dec.clone().float() if b_dec is not None else torch.zeros(d_in))

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, hidden] codes."""
        return torch.relu(self.encoder(x_BD - self.b_dec))

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, d] reconstruction."""
        return self.decoder(self.encode(x_BD)) + self.b_dec


def train_dense_ae(
    x_train: np.ndarray,
    x_dev: np.ndarray,
    hidden: int = 8,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int = 1024,
    max_epochs: int = 2000,
    patience: int = 50,
    threads: int = 2,
) -> tuple[DenseAE, dict]:
    """Train a ``DenseAE`` with Adam on MSE, keep the epoch with the best dev FVU.

    Returns (model, report) with fvu_train, fvu_dev, best_epoch, epochs, train_seconds.
    """
    x_tr = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)
    x_dv = torch.as_tensor(np.asarray(x_dev), dtype=torch.float32)
    if x_tr.ndim != 2 or x_dv.ndim != 2 or x_tr.shape[1] != x_dv.shape[1]:
        raise ValueError(f"need [N, d] and [M, d], got {tuple(x_tr.shape)}, {tuple(x_dv.shape)}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        mean_D = x_tr.mean(0)
        x_var = float(((x_tr - mean_D) ** 2).sum(-1).mean())
        model = DenseAE(x_tr.shape[1], hidden, b_dec=mean_D)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        batch = min(batch_size, x_tr.shape[0])
        best_fvu, best_state, best_epoch, stale = float("inf"), None, 0, 0
        train_seconds, epoch = 0.0, 0
        for epoch in range(1, max_epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(x_tr.shape[0], generator=gen)
            for start in range(0, x_tr.shape[0], batch):
                x_BD = x_tr[perm[start : start + batch]]
                loss = ((model(x_BD) - x_BD) ** 2).sum(-1).mean() / x_var
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            train_seconds += time.perf_counter() - t0
            with torch.inference_mode():
                fvu_dev = fvu(x_dv, model(x_dv))
            if fvu_dev < best_fvu:
                best_fvu, best_state, best_epoch, stale = (
                    fvu_dev,
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= patience:
                    break
        assert best_state is not None  # at least one epoch ran: max_epochs >= 1
        model.load_state_dict(best_state)
        model.eval()
        with torch.inference_mode():
            fvu_train = fvu(x_tr, model(x_tr))
        report = {
            "fvu_train": fvu_train,
            "fvu_dev": best_fvu,
            "best_epoch": best_epoch,
            "epochs": epoch,
            "train_seconds": train_seconds,
        }
        return model, report
    finally:
        torch.set_num_threads(previous_threads)


def sweep(
    x_train: np.ndarray,
    x_dev: np.ndarray,
    x_test: np.ndarray,
    scales: tuple[int, ...] = (8, 16, 32),
    ks: tuple[int, ...] = (4, 8, 16),
    base_config: SAEConfig | None = None,
    progress: bool = False,
) -> list[dict]:
    """Sensitivity to the scale s and sparsity k (paper §7, Figures 7/8): one SAE per (s, k).

    Each row: scale, k, n_latents, fvu_train, fvu_dev, fvu_test (held-out), dead_fraction (on
    the training set), dead_fraction_test, pca_fvu_test (PCA with k components), best_epoch,
    vectors_per_second.
    """
    base_config = base_config or SAEConfig()
    rows = []
    for scale in scales:
        for k in ks:
            sae, report = train_sae(
                x_train, x_dev, replace(base_config, scale=scale, k=k), progress=progress
            )
            idx, val, x_hat = encode_batched(sae, x_test)
            rows.append(
                {
                    "scale": scale,
                    "k": k,
                    "n_latents": sae.n_latents,
                    "fvu_train": report["fvu_train"],
                    "fvu_dev": report["fvu_dev"],
                    "fvu_test": fvu(np.asarray(x_test), x_hat),
                    "dead_fraction": report["dead_fraction"],
                    "dead_fraction_test": dead_fraction(fire_counts(idx, val, sae.n_latents)),
                    "pca_fvu_test": pca_fvu(x_train, x_test, k),
                    "best_epoch": report["best_epoch"],
                    "vectors_per_second": report["vectors_per_second"],
                }
            )
    return rows
