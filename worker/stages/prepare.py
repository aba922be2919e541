"""prepare: read the raw dataset, keep positive interactions, k-core, split (docs/method.md
§1.1)."""

from __future__ import annotations

from core.rundir import DATASET_DIR
from worker.data.preprocess import PrepareConfig, preprocess
from worker.data.readers import read_dataset
from worker.run import Run


def prepare(run: Run) -> None:
    cfg = run.config
    raw = read_dataset(cfg.dataset_format, cfg.dataset_path)
    dataset = preprocess(raw, PrepareConfig(cfg.rating_threshold, cfg.k_core), log=run.log)
    dataset.name = cfg.dataset_name
    dataset.save(run.path(DATASET_DIR))
    run.dataset = dataset
