"""The TopK sparse autoencoder of RecSAE (paper §3.2.2, eq. 2; docs/method.md §1.4).

    z     = TopK(W_enc^T (x - b_dec))        (ReLU on the k kept values)
    x_hat = W_dec^T z + b_dec

``b_dec`` is the paper's ``b_pre``. The module holds parameters and encode / decode / forward
only; the optimiser, the dead-latent counters and the AuxK loss belong to the trainer
(``worker.sae.train``). Parameter names and layouts follow SAELens (``W_enc`` [d_in, d_sae],
``W_dec`` [d_sae, d_in]) so ``worker.sae.io`` can save it as a SAELens ``topk`` SAE.

Speed: only the *selection* of the k latents needs the dense [B, n] pre-activations, and it needs
no gradient. The k kept values are recomputed from the k gathered encoder columns, and decoding
sums k gathered decoder rows, so the autograd graph is O(B·k·d) instead of O(B·n·d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TopKSAE(nn.Module):
    """TopK SAE with ``n_latents`` latents of which exactly ``k`` are kept per input.

    Parameters: ``W_enc`` [d_in, n_latents], ``W_dec`` [n_latents, d_in] (unit-norm rows, kept
    so by the trainer), ``b_dec`` [d_in]. ``b_enc`` [n_latents] is a zero buffer: eq. 2 has no
    encoder bias; it exists so the saved file has every tensor SAELens expects.
    """

    b_enc: torch.Tensor  # registered buffer (annotated so type checkers see a tensor)

    def __init__(
        self,
        d_in: int,
        n_latents: int,
        k: int,
        b_dec: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        """Random init: W_dec has random unit rows and W_enc = W_dec^T (Gao et al. 2024 §A.1).

        ``b_dec`` [d_in] should be the mean of the training data (docs/method.md §1.4); zeros if
        omitted.
        """
        super().__init__()
        if d_in <= 0 or n_latents <= 0:
            raise ValueError(f"d_in and n_latents must be positive, got {d_in}, {n_latents}")
        if not 0 < k <= n_latents:
            raise ValueError(f"k must be in 1..n_latents={n_latents}, got {k}")
        self.d_in = d_in
        self.n_latents = n_latents
        self.k = k
        gen = torch.Generator().manual_seed(seed)
        w_enc_DN = torch.randn(d_in, n_latents, generator=gen)
        w_enc_DN /= w_enc_DN.norm(dim=0, keepdim=True)
        self.W_enc = nn.Parameter(w_enc_DN)
        # docs/method.md §1.4: W_dec = W_enc^T, unit rows (W_enc columns are already unit)
        self.W_dec = nn.Parameter(w_enc_DN.T.contiguous())
        if b_dec is None:
            b_dec = torch.zeros(d_in)
        if b_dec.shape != (d_in,):
            raise ValueError(f"b_dec must have shape ({d_in},), got {tuple(b_dec.shape)}")
        self.b_dec = nn.Parameter(b_dec.detach().clone().float())
        self.register_buffer("b_enc", torch.zeros(n_latents))

    def pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, n] dense pre-activations (x - b_dec) W_enc + b_enc: what TopK selects from."""
        pre_BN = (x_BD - self.b_dec) @ self.W_enc
        # b_enc is zero unless loaded from a foreign SAELens file; skip the [B, n] add then
        return pre_BN + self.b_enc if bool(self.b_enc.any()) else pre_BN

    def pre_acts_at(self, x_BD: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
        """[B, m] pre-activations of the latents ``idx_BK`` [B, m] only: gathers m encoder
        columns per input, so its gradient touches only those columns (sparse backward)."""
        # gathering rows of a contiguous [n, d] copy is ~3x faster than columns of W_enc
        w_BKD = F.embedding(idx_BK, self.W_enc.T.contiguous())
        xc_B1D = (x_BD - self.b_dec).unsqueeze(1)
        # multiply-and-sum beats bmm of B tiny [k, d] x [d, 1] products ~3x on CPU
        return (w_BKD * xc_B1D).sum(-1) + self.b_enc[idx_BK]

    def select(self, x_BD: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """[B, k] int64 indices of the k largest pre-activations (no gradient: a choice)."""
        with torch.no_grad():
            k = self.k if k is None else k
            return self.pre_acts(x_BD).topk(k, dim=-1, sorted=False).indices

    def encode(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse code of x (eq. 2): ``(idx [B, k] int64, val [B, k])``, ``val >= 0``.

        Exactly k indices per input; a kept value whose pre-activation is negative becomes 0.
        """
        if torch.is_grad_enabled():
            idx_BK = self.select(x_BD)
            val_BK = self.pre_acts_at(x_BD, idx_BK)
        else:
            val_BK, idx_BK = self.pre_acts(x_BD).topk(self.k, dim=-1, sorted=False)
        return idx_BK, F.relu(val_BK)

    def encode_dense(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, n] latents with the k kept values scattered in, zeros elsewhere."""
        idx_BK, val_BK = self.encode(x_BD)
        z_BN = torch.zeros(x_BD.shape[0], self.n_latents, dtype=val_BK.dtype, device=val_BK.device)
        return z_BN.scatter(1, idx_BK, val_BK)

    def decode_sparse(
        self, idx_BK: torch.Tensor, val_BK: torch.Tensor, with_bias: bool = True
    ) -> torch.Tensor:
        """[B, d] sum of the ``idx`` rows of W_dec weighted by ``val`` (+ b_dec).

        ``with_bias=False`` is the AuxK decode of eq. 3 (e_hat = W_dec z').
        """
        out_BD = F.embedding_bag(idx_BK, self.W_dec, per_sample_weights=val_BK, mode="sum")
        return out_BD + self.b_dec if with_bias else out_BD

    def decode(self, z_BN: torch.Tensor) -> torch.Tensor:
        """[B, d] decode of dense latents [B, n] (steering edits dense codes)."""
        return z_BN @ self.W_dec + self.b_dec

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, d] reconstruction x_hat."""
        idx_BK, val_BK = self.encode(x_BD)
        return self.decode_sparse(idx_BK, val_BK)
