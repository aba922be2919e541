"""Save and load a trained recommender: one directory, ``recommender.safetensors`` (weights and
buffers) + ``recommender.json`` (name, sizes, config). No pickles, no dataset needed to load."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from safetensors.torch import load_file, save_file

from worker.recommenders.base import Recommender
from worker.recommenders.train import RecommenderConfig, build_recommender

WEIGHTS, META = "recommender.safetensors", "recommender.json"


def save_recommender(model: Recommender, config: RecommenderConfig, directory: Path) -> Path:
    """Write the model's state dict and metadata into ``directory`` (created); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS))
    meta = {
        "name": model.name,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "config": asdict(config),
    }
    (directory / META).write_text(json.dumps(meta, indent=2))
    return directory


def load_recommender(directory: Path) -> Recommender:
    """The model saved in ``directory``, in eval mode."""
    directory = Path(directory)
    for fname in (WEIGHTS, META):
        if not (directory / fname).is_file():
            raise FileNotFoundError(f"{directory / fname} is missing: not a saved recommender")
    meta = json.loads((directory / META).read_text())
    known = {f.name for f in fields(RecommenderConfig)}
    unknown = set(meta["config"]) - known
    if unknown:
        raise ValueError(f"{directory / META}: unknown config fields {sorted(unknown)}")
    config = RecommenderConfig(**meta["config"])
    model = build_recommender(meta["name"], meta["n_users"], meta["n_items"], config)
    model.load_state_dict(load_file(str(directory / WEIGHTS)))
    return model.eval()
