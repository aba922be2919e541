"""The run directory: every file name a run writes, and the loaders that read them back.

A run is a directory ``<data_dir>/runs/<run id>/``. Arrays are safetensors (or npz), numbers and
concepts JSON, never a Python object dump. The worker writes these files stage by stage; the
database keeps the directory's path and the numbers (see :mod:`core.reports`), the backend reads
the arrays it steers with through the numpy loaders here (no torch).

Files, by the stage that writes them (docs/method.md §1 for what each holds):
- prepare: ``dataset/``
- train_recommender: ``recommender.safetensors`` + ``recommender.json``, ``recommender_report.json``
- probe: ``probe.npz`` (cases + representations), ``vectors.safetensors`` (what steering needs)
- train_sae: ``sae/cfg.json`` + ``sae/sae_weights.safetensors`` (SAELens), ``sae_report.json``
- record: ``record.npz`` (TopK codes and the model's top-10 of every case)
- interpret: ``interpretation.safetensors`` (levels, examples, statistics, decoder effects; the
  SAE's and the Base dimensions') + ``interpretation.json`` (TF-IDF concepts, histograms, sizes)
- explain_llm: ``llm_concepts.json`` (only when LLM concepts were asked for)
- evaluate: ``report.json`` (the paper's tables and figures), ``tuning.json`` (per-latent Table 8)
- sweep: ``sweep.json`` (only with ``--sweep``)
- the pipeline itself: ``config.json`` and one ``.done-<stage>`` marker per finished stage
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from core.jsonsafe import jsonable

CONFIG = "config.json"
DATASET_DIR = "dataset"
DATASET_ARRAYS = "dataset.npz"  # inside DATASET_DIR: interaction sequences and splits
DATASET_META = "dataset.json"  # inside DATASET_DIR: ids, item metadata, preprocessing counts
RECOMMENDER_WEIGHTS = "recommender.safetensors"
RECOMMENDER_CONFIG = "recommender.json"
RECOMMENDER_REPORT = "recommender_report.json"
PROBE = "probe.npz"
VECTORS = "vectors.safetensors"
SAE_DIR = "sae"
SAE_CFG = "cfg.json"  # inside SAE_DIR (SAELens's name)
SAE_WEIGHTS = "sae_weights.safetensors"  # inside SAE_DIR (SAELens's name)
SAE_REPORT = "sae_report.json"
RECORD = "record.npz"
INTERPRETATION_ARRAYS = "interpretation.safetensors"
INTERPRETATION_JSON = "interpretation.json"
LLM_CONCEPTS = "llm_concepts.json"
REPORT = "report.json"
TUNING = "tuning.json"
SWEEP = "sweep.json"
DONE_PREFIX = ".done-"

# What each stage always leaves behind (relative to the run directory): a stage whose marker
# exists but whose files do not (an older layout, a deleted file) is not done.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "prepare": (f"{DATASET_DIR}/{DATASET_ARRAYS}", f"{DATASET_DIR}/{DATASET_META}"),
    "train_recommender": (RECOMMENDER_WEIGHTS, RECOMMENDER_CONFIG, RECOMMENDER_REPORT),
    "probe": (PROBE, VECTORS),
    "train_sae": (f"{SAE_DIR}/{SAE_CFG}", f"{SAE_DIR}/{SAE_WEIGHTS}", SAE_REPORT),
    "record": (RECORD,),
    "interpret": (INTERPRETATION_ARRAYS, INTERPRETATION_JSON),
    "evaluate": (REPORT,),
}

SAE_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")
VECTOR_TENSORS = ("item_embeddings", "user_vectors")


class ArtifactError(RuntimeError):
    """A run directory's file is missing or not what its writer wrote; says which and why."""


class MissingArtifact(ArtifactError, FileNotFoundError):
    """The file is not there at all (also a ``FileNotFoundError``, which callers may catch)."""


def done_marker(stage: str) -> str:
    """The file whose presence says ``stage`` finished (it holds ``{"seconds": ...}``)."""
    return f"{DONE_PREFIX}{stage}"


def stage_writing(name: str) -> str | None:
    """The stage that writes run-directory file ``name`` (None for files no stage always writes)."""
    for stage, outputs in STAGE_OUTPUTS.items():
        if name in outputs:
            return stage
    return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays as one safetensors file (any dtype safetensors has; made contiguous)."""
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def load_arrays(path: Path, names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of a safetensors file, dtypes as written; ``names`` must all be present."""
    if not Path(path).is_file():
        raise MissingArtifact(f"missing artifact {path}")
    arrays = load_file(str(path))
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks arrays {missing}; it has {sorted(arrays)}")
    return arrays


def write_json(path: Path, obj: Any) -> None:
    """``obj`` (numpy values allowed, NaN -> null) as indented JSON."""
    Path(path).write_text(json.dumps(jsonable(obj), indent=2))


def read_json(path: Path) -> Any:
    """A JSON file of the run directory, or :class:`MissingArtifact` naming it."""
    if not Path(path).is_file():
        raise MissingArtifact(f"missing artifact {path}")
    return json.loads(Path(path).read_text())


def load_tensors(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named float32 arrays of a safetensors file, each checked present."""
    if not path.is_file():
        raise MissingArtifact(f"missing artifact {path}")
    arrays = load_file(str(path))
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks tensors {missing}; it has {sorted(arrays)}")
    return {n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in names}


def read_sae_cfg(sae_dir: Path) -> dict[str, Any]:
    """The SAE's ``cfg.json`` (SAELens keys ``d_in``, ``d_sae``, ``k``, ``architecture``)."""
    path = Path(sae_dir) / SAE_CFG
    if not path.is_file():
        raise MissingArtifact(f"no SAE here: {path} is missing")
    cfg: dict[str, Any] = json.loads(path.read_text())
    missing = [key for key in ("d_in", "d_sae", "k") if key not in cfg]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}: not a TopK SAE config")
    if cfg.get("architecture", "topk") != "topk":
        raise ArtifactError(f"{path} holds a {cfg['architecture']!r} SAE; only 'topk' is supported")
    return cfg


def load_sae_dir(sae_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(cfg, {W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d]}) of the SAE saved in
    ``sae_dir`` (SAELens layout), each tensor's shape checked against ``cfg.json``."""
    sae_dir = Path(sae_dir)
    cfg = read_sae_cfg(sae_dir)
    arrays = load_tensors(sae_dir / SAE_WEIGHTS, SAE_TENSORS)
    d, n = int(cfg["d_in"]), int(cfg["d_sae"])
    expected = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ArtifactError(
                f"{sae_dir / SAE_WEIGHTS}: {name} has shape {arrays[name].shape}, cfg.json says "
                f"{shape}"
            )
    return cfg, arrays


def load_sae_arrays(run_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A run's SAE as :func:`load_sae_dir` reads it."""
    return load_sae_dir(Path(run_dir) / SAE_DIR)


def load_vectors(run_dir: Path) -> dict[str, np.ndarray]:
    """{item_embeddings [I, d], user_vectors [U, d]}: what the probe left for steering."""
    return load_tensors(Path(run_dir) / VECTORS, VECTOR_TENSORS)
