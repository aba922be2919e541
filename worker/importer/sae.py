"""An SAE trained elsewhere (docs/import.md, ``--sae``): a TopK SAE in SAELens's layout
(``cfg.json`` + ``sae_weights.safetensors``), its shapes checked against the imported vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from core.rundir import SAE_CFG, SAE_WEIGHTS
from worker.importer.formats import ImportRefused, float_matrix


def check_sae(sae_dir: Path, d: int, bias: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A TopK SAE in SAELens's layout (cfg.json + sae_weights.safetensors) fitting d; widened by
    one input (the constant 1 of a bias, passed through by b_dec) when the score has a bias."""
    cfg_path, weights_path = sae_dir / SAE_CFG, sae_dir / SAE_WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise ImportRefused(
                f"{path.name} in {sae_dir}: missing; --sae takes a SAELens directory "
                f"({SAE_CFG} + {SAE_WEIGHTS})"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: must hold a JSON object")
    arch = cfg.get("architecture", "topk")
    if arch != "topk":
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: architecture {arch!r}; only 'topk' SAEs")
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    for key, value in (("d_in", cfg.get("d_in")), ("d_sae", cfg.get("d_sae")), ("k", k)):
        if not isinstance(value, int) or value <= 0:
            raise ImportRefused(f"{SAE_CFG} in {sae_dir}: {key} must be a positive integer")
    assert isinstance(k, int)  # checked just above
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    if d_in != d:
        raise ImportRefused(
            f"{SAE_CFG} in {sae_dir}: d_in = {d_in}, the imported vectors have d = {d}; the SAE "
            "must be trained on these representations"
        )
    if not 0 < int(k) <= d_sae:
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: k = {k} must be in 1 .. d_sae = {d_sae}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ImportRefused(f"{SAE_WEIGHTS} in {sae_dir}: cannot read: {err}") from err
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise ImportRefused(f"{SAE_WEIGHTS} in {sae_dir}: tensor {name} is missing")
        where = f"{SAE_WEIGHTS} in {sae_dir}"
        array = tensors[name]
        if tuple(array.shape) != shape:
            raise ImportRefused(
                f"{where}: {name} has shape {tuple(array.shape)}, expected {shape} (SAELens "
                "layout: W_enc [d_in, d_sae], W_dec [d_sae, d_in])"
            )
        out[name] = float_matrix(array, where, name, ndim=array.ndim)
    if bias:  # x' = [x, 1]: encoder ignores the 1 (x - b_dec = 0 there), decoder restores it
        out["W_enc"] = np.concatenate([out["W_enc"], np.zeros((1, d_sae), np.float32)])
        out["W_dec"] = np.concatenate([out["W_dec"], np.zeros((d_sae, 1), np.float32)], axis=1)
        out["b_dec"] = np.concatenate([out["b_dec"], np.ones(1, np.float32)])
    cfg_out = {
        "architecture": "topk", "d_in": d_in + int(bias), "d_sae": d_sae, "k": int(k),
        "activation_fn_kwargs": {"k": int(k)}, "apply_b_dec_to_input": True,
        "normalize_activations": "none", "dtype": "float32", "device": "cpu",
        "recsae_config": None, "imported_from": str(sae_dir), "widened_for_bias": bias,
    }  # fmt: skip
    return cfg_out, out
