"""Adding a recommender is one class: a toy model defined here (not in worker/) registers itself,
carries its own defaults and config field, and goes through the whole pipeline to the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from core.rundir import RECOMMENDER_CONFIG, RECOMMENDER_REPORT
from core.settings import Settings
from core.store import reads
from core.store.engine import session_factory
from worker.data.dataset import Dataset
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.errors import ConfigError
from worker.pipeline import RunConfig, run_pipeline
from worker.recommenders import REGISTRY
from worker.recommenders.base import Batch, Recommender, RecommenderConfig
from worker.recommenders.bprmf import bpr_loss, pair_batches
from worker.recommenders.sampling import KnownItems
from worker.recommenders.train import default_config

pytestmark = pytest.mark.slow


@dataclass
class ToyConfig(RecommenderConfig):
    user_scale: float = 1.0  # a field no built-in model has: the toy's own


@pytest.fixture(scope="module")
def toy_model() -> Iterator[type[Recommender]]:
    """Defining the class registers it (``Recommender.__init_subclass__``); removed afterwards."""

    class ToyMF(Recommender):
        name = "toy"
        sequential = False
        config_class = ToyConfig
        defaults = {"lr": 1e-2, "batch_size": 512, "epochs": 4, "eval_every": 2, "init_std": 0.1}

        def __init__(self, n_users: int, n_items: int, config: ToyConfig) -> None:
            super().__init__(n_users, n_items, config)
            self.user_emb = nn.Embedding(n_users, config.emb_size)
            self.item_emb = nn.Embedding(n_items, config.emb_size)
            nn.init.normal_(self.user_emb.weight, std=config.init_std)
            nn.init.normal_(self.item_emb.weight, std=config.init_std)
            self._known: KnownItems | None = None

        def training_batches(self, dataset: Dataset, rng: np.random.Generator) -> Iterator[Batch]:
            self._known = self._known or KnownItems(dataset)
            return pair_batches(dataset, rng, self.config.batch_size, 1, self._known)

        def loss(self, batch: Batch) -> torch.Tensor:
            u_BD = self.user_representation(batch)
            pos_B = (u_BD * self.item_emb(batch["pos"])).sum(-1)
            neg_BK = torch.einsum("bd,bkd->bk", u_BD, self.item_emb(batch["neg"]))
            return bpr_loss(pos_B, neg_BK)

        def user_representation(self, batch: Batch) -> torch.Tensor:
            return self.config.user_scale * self.user_emb(batch["user"])

        def item_embeddings(self) -> torch.Tensor:
            return self.item_emb.weight

    assert REGISTRY["toy"] is ToyMF
    yield ToyMF
    del REGISTRY["toy"]


def test_defaults_and_own_fields_come_from_the_class(toy_model: type[Recommender]) -> None:
    config = default_config("toy", user_scale=2.0)
    assert isinstance(config, ToyConfig)
    assert (config.lr, config.epochs, config.user_scale) == (1e-2, 4, 2.0)
    with pytest.raises(ConfigError, match="no config field"):
        default_config("toy", n_interests=3)  # TiMiRec's field, not the toy's


def test_toy_model_runs_end_to_end_into_the_store(
    toy_model: type[Recommender], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("toy")
    raw, _ = generate(SyntheticConfig(n_users=300, n_items=100, n_tags=4, mean_history=20, seed=1))
    settings = Settings(data_dir=root / "var")
    config = RunConfig(
        recommender="toy", dataset_format="generic",
        dataset_path=str(write_generic_csv(raw, root / "csv")), dataset_name="synthetic",
        rating_threshold=None, sae_scale=1, sae_k=4, sae_overrides={"max_epochs": 20},
        recommender_overrides={"user_scale": 1.5, "threads": 1},
    )  # fmt: skip
    run = run_pipeline(config, settings=settings, log=lambda _: None)

    assert run.done("publish")
    saved = json.loads((run.dir / RECOMMENDER_CONFIG).read_text())
    assert saved["name"] == "toy" and saved["config"]["user_scale"] == 1.5
    report = json.loads((run.dir / RECOMMENDER_REPORT).read_text())
    with session_factory(settings.resolved_database_url)() as session:
        published = reads.get_run(session, "synthetic-toy")
    assert published is not None and published.recommender == "toy"
    assert published.n_latents == 64  # scale 1 x d = 64
    metrics = published.metrics
    assert metrics["recommender"]["name"] == "toy"
    assert metrics["recommender"]["test"] == report["test"]
    assert metrics["recommender"]["config"]["user_scale"] == 1.5
    assert metrics["sae"]["n_latents"] == 64 and metrics["sae"]["fvu_test"] is not None
    assert set(metrics["report"]["table4"]) == {"sae", "base"}
