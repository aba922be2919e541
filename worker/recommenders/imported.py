"""A recommender trained elsewhere, imported as fixed vectors (docs/import.md).

``recsae import`` checks an import directory and leaves its normalised copy in the run directory
(``worker/importer/``); this model's "training" loads those vectors, so every later stage
(probe, SAE, record, interpret, evaluate, publish) runs on them unchanged. score(x, i) = x · e_i;
a model with an item bias b_i is imported with one more dimension, x' = [x, 1] and
e'_i = [e_i, b_i], so x' · e'_i = x · e_i + b_i (docs/import.md, the score).

Two registered names: ``imported`` (one vector per user, or only each user's last position) and
``imported-sequential`` (a vector for every position of every history; docs/method.md §1.3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file

from worker.data.dataset import Dataset
from worker.errors import ConfigError
from worker.recommenders.base import Batch, Recommender, RecommenderConfig

VECTORS = "vectors.safetensors"  # item_emb [I_src, d'], case_reps [C, d'] (float32)
IDS = "ids.json"  # items [I_src], case_users [C], case_positions [C]


@dataclass
class ImportedConfig(RecommenderConfig):
    source: str = ""  # the normalised import directory (inside the run directory)
    n_cases: int = 0  # rows of case_reps: users (one vector each) or (user, position) pairs
    description: str = ""  # the manifest's description, shown in the run report


class Imported(Recommender):
    item_emb: torch.Tensor  # registered buffer [n_items, d]
    case_reps: torch.Tensor  # registered buffer [n_cases, d], by (user, position)
    case_offset: torch.Tensor  # registered buffer [n_users]: the user's first row in case_reps
    name = "imported"
    sequential = False
    config_class = ImportedConfig
    defaults = {"epochs": 0}  # nothing to train: the vectors are fixed

    def __init__(self, n_users: int, n_items: int, config: ImportedConfig) -> None:
        super().__init__(n_users, n_items, config)
        d = config.emb_size
        self.register_buffer("item_emb", torch.zeros(n_items, d))
        self.register_buffer("case_reps", torch.zeros(config.n_cases, d))
        self.register_buffer("case_offset", torch.zeros(n_users, dtype=torch.long))
        self._dataset: Dataset | None = None

    def prepare(self, dataset: Dataset) -> None:
        """Load the imported vectors into the buffers, in the dataset's dense id order."""
        if not self.config.source:
            raise ConfigError(
                f"{self.name} loads a model trained elsewhere: make its run with "
                "recsae import DIR --name NAME (docs/import.md), not recsae run"
            )
        source = Path(self.config.source)
        arrays = load_file(str(source / VECTORS))
        ids = json.loads((source / IDS).read_text())
        row_of_item = {item: row for row, item in enumerate(ids["items"])}
        item_rows = np.array([row_of_item[item] for item in dataset.item_ids], dtype=np.int64)
        user_of = {user: u for u, user in enumerate(dataset.user_ids)}
        users = np.array([user_of[user] for user in ids["case_users"]], dtype=np.int64)
        positions = np.asarray(ids["case_positions"], dtype=np.int64)
        order = np.lexsort((positions, users))  # by user, then position
        counts = np.bincount(users, minlength=dataset.n_users)
        self.item_emb.copy_(torch.from_numpy(arrays["item_emb"][item_rows]))
        self.case_reps.copy_(torch.from_numpy(arrays["case_reps"][order]))
        self.case_offset.copy_(torch.from_numpy(np.cumsum(counts) - counts))
        self._dataset = dataset

    def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
        return iter(())  # ``prepare`` loaded everything

    def loss(self, batch: Batch) -> torch.Tensor:
        raise RuntimeError("an imported model is not trained here; prepare(dataset) loads it")

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.case_reps[self.case_offset[batch["user"]]]

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb

    def report_extras(self) -> dict[str, Any]:
        """The run report's ``imported`` entry: the manifest's description and the check that
        scoring these vectors reproduces the source model's own top 10 (docs/import.md)."""
        from worker.importer import ranking_check, read_ranking  # torch-heavy, imported late

        source = Path(self.config.source)
        meta = json.loads((source / "import.json").read_text())
        if self._dataset is None:
            raise RuntimeError("prepare(dataset) first")
        ranking = read_ranking(source)
        with torch.no_grad():
            reps = self.user_representation(_test_batch(self._dataset)).numpy()
        check = ranking_check(self.item_emb.numpy(), reps, self._dataset, ranking)
        return {
            "imported": {
                "description": self.config.description,
                "manifest": meta["manifest"],
                "score": meta["score"],
                "sequential": self.sequential,
                "ranking_reproduced": check["reproduced"],
                "ranking_users": check["users"],
                "ranking_overlap": check["overlap"],
                "stated_metrics": meta.get("metrics_check", {}),
                "sae": meta.get("sae"),
            }
        }


class ImportedSequential(Imported):
    """A vector for every history length 1 .. n_u - 1 of every user u (docs/import.md)."""

    name = "imported-sequential"
    sequential = True

    def user_representation(self, batch: Batch) -> torch.Tensor:
        # Row of (u, n): the user's first row + n - 1 (positions 1 .. n_u - 1, all present).
        return self.case_reps[self.case_offset[batch["user"]] + batch["length"] - 1]


def _test_batch(dataset: Dataset) -> Batch:
    """Every user at the test position (history length n_u - 1)."""
    return {
        "user": torch.arange(dataset.n_users),
        "length": torch.tensor([len(s) - 1 for s in dataset.sequences], dtype=torch.long),
    }
