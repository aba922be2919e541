"""Saving and loading a TopK SAE in SAELens's layout (docs/architecture.md; SAELens-compatible).

A directory holds ``cfg.json`` (SAELens keys ``d_in``, ``d_sae``, ``k``, ``architecture``,
``apply_b_dec_to_input``, ``dtype``, plus our ``SAEConfig`` under ``recsae_config``) and
``sae_weights.safetensors`` with ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec``
[d_sae, d_in], ``b_dec`` [d_in]. SAELens's TopK SAE computes TopK((x - b_dec) W_enc + b_enc)
with ReLU on the kept values, which is exactly ``TopKSAE.encode``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import save_file

from core import atomic
from core.rundir import SAE_CFG, SAE_TENSORS, SAE_WEIGHTS, load_sae_dir, read_sae_cfg
from worker.sae.model import TopKSAE
from worker.sae.train import SAEConfig


def save_sae(sae: TopKSAE, config: SAEConfig | None, directory: str | Path) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into ``directory`` (created), each
    atomically (:mod:`core.atomic`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {
        "architecture": "topk",
        "d_in": sae.d_in,
        "d_sae": sae.n_latents,
        "k": sae.k,
        "activation_fn_kwargs": {"k": sae.k},
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "dtype": "float32",
        "device": "cpu",
        "recsae_config": asdict(config) if config is not None else None,
    }
    atomic.write_text(directory / SAE_CFG, json.dumps(cfg, indent=2))
    tensors = {
        "W_enc": sae.W_enc.detach(),
        "b_enc": sae.b_enc.detach(),
        "W_dec": sae.W_dec.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    with atomic.atomic_path(directory / SAE_WEIGHTS) as partial:
        save_file({name: t.float().contiguous().cpu() for name, t in tensors.items()}, partial)
    return directory


def load_sae(directory: str | Path) -> TopKSAE:
    """The TopKSAE saved in ``directory``, in eval mode; shapes checked against ``cfg.json``."""
    cfg, tensors = load_sae_dir(Path(directory))
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    sae = TopKSAE(d_in, d_sae, int(cfg["k"]))
    with torch.no_grad():
        for name in SAE_TENSORS:
            getattr(sae, name).copy_(torch.from_numpy(tensors[name]))
    return sae.eval()


def load_sae_config(directory: str | Path) -> SAEConfig | None:
    """The ``SAEConfig`` saved with the SAE (None if it was saved without one)."""
    raw = read_sae_cfg(Path(directory)).get("recsae_config")
    if raw is None:
        return None
    known = {f.name for f in fields(SAEConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"saved SAEConfig has fields this code does not know: {sorted(unknown)}")
    return SAEConfig(**raw)
