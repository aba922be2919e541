"""Saving and loading a TopK SAE in SAELens's layout (STYLE.md "Artifacts on disk").

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
from safetensors.torch import load_file, save_file

from worker.sae.model import TopKSAE
from worker.sae.train import SAEConfig

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")


def save_sae(sae: TopKSAE, config: SAEConfig | None, directory: str | Path) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into ``directory`` (created)."""
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
    (directory / CFG_FILE).write_text(json.dumps(cfg, indent=2))
    tensors = {
        "W_enc": sae.W_enc.detach(),
        "b_enc": sae.b_enc.detach(),
        "W_dec": sae.W_dec.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    save_file(
        {name: t.float().contiguous().cpu() for name, t in tensors.items()},
        directory / WEIGHTS_FILE,
    )
    return directory


def _read_cfg(directory: Path) -> dict:
    path = directory / CFG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no SAE here: {path} is missing (expected a save_sae directory)")
    cfg = json.loads(path.read_text())
    missing = [key for key in ("d_in", "d_sae", "k") if key not in cfg]
    if missing:
        raise ValueError(f"{path} lacks {missing}: not a TopK SAE config")
    if cfg.get("architecture", "topk") != "topk":
        raise ValueError(f"{path} holds a {cfg['architecture']!r} SAE; only 'topk' is supported")
    return cfg


def load_sae(directory: str | Path) -> TopKSAE:
    """The TopKSAE saved in ``directory``, in eval mode; shapes checked against ``cfg.json``."""
    directory = Path(directory)
    cfg = _read_cfg(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing beside {CFG_FILE}")
    tensors = load_file(weights_path)
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name in _TENSORS:
        if name not in tensors:
            raise ValueError(f"{weights_path} lacks tensor {name!r}")
        if tuple(tensors[name].shape) != expected[name]:
            raise ValueError(
                f"{weights_path}: {name} has shape {tuple(tensors[name].shape)}, "
                f"cfg.json implies {expected[name]}"
            )
    sae = TopKSAE(d_in, d_sae, int(cfg["k"]))
    with torch.no_grad():
        for name in _TENSORS:
            getattr(sae, name).copy_(tensors[name].float())
    return sae.eval()


def load_sae_config(directory: str | Path) -> SAEConfig | None:
    """The ``SAEConfig`` saved with the SAE (None if it was saved without one)."""
    raw = _read_cfg(Path(directory)).get("recsae_config")
    if raw is None:
        return None
    known = {f.name for f in fields(SAEConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"saved SAEConfig has fields this code does not know: {sorted(unknown)}")
    return SAEConfig(**raw)
