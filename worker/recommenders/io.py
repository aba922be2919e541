"""Save and load a trained recommender: one directory, ``recommender.safetensors`` (weights and
buffers) + ``recommender.json`` (name, sizes, config). Plain tensors and JSON; no dataset needed
to load."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from safetensors.torch import load_file, save_file

from core import atomic
from core.rundir import RECOMMENDER_CONFIG, RECOMMENDER_WEIGHTS, ArtifactError, MissingArtifact
from worker.recommenders.base import Recommender, RecommenderConfig, recommender_class
from worker.recommenders.train import build_recommender

# Runs saved before TiMiRec got its own config class wrote these four fields into every model's
# config; they never affected any other model, so loading such a file drops them there.
_FIELDS_BEFORE_PER_MODEL_CONFIGS = frozenset(
    {"n_interests", "attn_size", "temperature", "distill_weight"}
)


def save_recommender(model: Recommender, config: RecommenderConfig, directory: Path) -> Path:
    """Write the model's state dict and metadata into ``directory`` (created), each file
    atomically (:mod:`core.atomic`); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic.atomic_path(directory / RECOMMENDER_WEIGHTS) as partial:
        save_file(state, str(partial))
    meta = {
        "name": model.name,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "config": asdict(config),
    }
    atomic.write_text(directory / RECOMMENDER_CONFIG, json.dumps(meta, indent=2))
    return directory


def load_recommender(directory: Path) -> Recommender:
    """The model saved in ``directory``, in eval mode."""
    directory = Path(directory)
    for fname in (RECOMMENDER_WEIGHTS, RECOMMENDER_CONFIG):
        if not (directory / fname).is_file():
            raise MissingArtifact(f"{directory / fname} is missing: not a saved recommender")
    meta = json.loads((directory / RECOMMENDER_CONFIG).read_text())
    config_class = recommender_class(meta["name"]).config_class
    known = {f.name for f in fields(config_class)}
    saved = {k: v for k, v in meta["config"].items()
             if k in known or k not in _FIELDS_BEFORE_PER_MODEL_CONFIGS}  # fmt: skip
    unknown = set(saved) - known
    if unknown:
        raise ArtifactError(
            f"{directory / RECOMMENDER_CONFIG}: unknown config fields {sorted(unknown)}"
        )
    model = build_recommender(meta["name"], meta["n_users"], meta["n_items"], config_class(**saved))
    model.load_state_dict(load_file(str(directory / RECOMMENDER_WEIGHTS)))
    return model.eval()
