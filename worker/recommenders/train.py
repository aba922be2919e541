"""Train a recommender: seeded, early-stopped on dev NDCG@10, scored on test (docs/method.md §1.2).

Full ranking on every evaluation (all items, the user's other known items masked, ties against
the target). Each model's tuned defaults live on its class (``Recommender.defaults``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worker.cases import DEV, TEST
from worker.data.dataset import Dataset
from worker.device import CPU, to_device
from worker.errors import ConfigError
from worker.metrics.ranking import hit_ndcg, ranking_report
from worker.prefetch import prefetched
from worker.probe import evaluate
from worker.recommenders.base import Recommender, RecommenderConfig, recommender_class
from worker.threads import ThreadGovernor, governor


def default_config(name: str, **overrides: Any) -> RecommenderConfig:
    """Model ``name``'s config: its class's tuned ``defaults``, then ``overrides`` on top.

    An override naming a field the model's config lacks is a :class:`ConfigError` (a typo in
    ``--set recommender.FIELD=VALUE`` must not train with the default silently).
    """
    cls = recommender_class(name, what="no defaults for recommender")
    known = {f.name for f in fields(cls.config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{name} has no config field(s) {unknown}; its fields: {sorted(known)}")
    return replace(cls.config_class(), **{**cls.defaults, **overrides})


def build_recommender(
    name: str, n_users: int, n_items: int, config: RecommenderConfig
) -> Recommender:
    """Instantiate ``REGISTRY[name]`` with a loud error for unknown names."""
    cls = recommender_class(name)
    if not isinstance(config, cls.config_class):
        raise TypeError(
            f"{name} needs a {cls.config_class.__name__}, got a {type(config).__name__}"
        )
    return cls(n_users, n_items, config)


def _dev_test(
    model: Recommender, dataset: Dataset, side: int, device: torch.device = CPU
) -> np.ndarray:
    """Evaluate on the CPU (worker/device.py): the model comes back to ``device`` after."""
    model.eval()
    model.to(CPU)
    try:
        with torch.no_grad():
            return evaluate(model, dataset, side)
    finally:
        model.to(device)


def training_governor(threads: int, model_class: type[Recommender]) -> ThreadGovernor:
    """The thread governor (worker/threads.py) for training ``model_class``: a core of the free
    ones is left to the batch producer when the model's batches are drawn ahead."""
    return governor(threads, reserve=int(model_class.prefetch_batches))


def train_epoch(
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    rng: np.random.Generator,
    epoch: int = 1,
    device: torch.device = CPU,
) -> list[float]:
    """One pass over the model's training batches (on ``device``); returns each step's loss.

    With ``model.prefetch_batches`` the batches are drawn on a background thread, a step ahead
    (``prefetched``): the same batches and random numbers, in the same order, as drawn inline
    (docs/method.md §1.2)."""
    model.train()
    losses = []
    batches = model.training_batches(dataset, rng)
    for batch in prefetched(batches) if model.prefetch_batches else batches:
        optimizer.zero_grad()
        loss = model.loss(to_device(batch, device))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{model.name}: non-finite loss {loss.item()} at epoch {epoch}"
            )
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train_recommender(
    dataset: Dataset,
    name: str,
    config: RecommenderConfig | None = None,
    progress: bool = True,
    device: torch.device = CPU,
) -> tuple[Recommender, dict[str, Any]]:
    """Train ``name`` on the TRAIN interactions, select on dev NDCG@10, report test.

    Returns the model (best dev weights, eval mode) and a report: epochs_run, best_epoch,
    dev / test {hr@10, ndcg@10, hr@20, ndcg@20}, test_ci (95% bootstrap CIs), train_seconds,
    history (dev metrics per evaluation), config.
    """
    config = config or default_config(name)
    torch.manual_seed(config.seed)
    threads = training_governor(config.threads, recommender_class(name))
    rng = np.random.default_rng(config.seed)
    model = build_recommender(name, dataset.n_users, dataset.n_items, config)
    model.prepare(dataset)
    model.to(device)  # training on the device; weights come back to the CPU below
    params = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    best_ndcg, best_epoch, epoch, bad_evals = -1.0, 0, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    epoch_seconds: list[float] = []  # each epoch's training steps, dev evaluations not included
    if params and config.epochs > 0:
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.l2)
        bar = tqdm(range(1, config.epochs + 1), desc=f"train {name}", disable=not progress)
        for epoch in bar:
            threads.update()
            epoch_start = time.perf_counter()
            losses = train_epoch(model, optimizer, dataset, rng, epoch, device)
            epoch_seconds.append(time.perf_counter() - epoch_start)
            if epoch % config.eval_every and epoch != config.epochs:
                continue
            dev = hit_ndcg(_dev_test(model, dataset, DEV, device))
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), **dev})
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", dev_ndcg10=f"{dev['ndcg@10']:.4f}")
            if dev["ndcg@10"] > best_ndcg:
                best_ndcg, best_epoch, bad_evals = dev["ndcg@10"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_evals += 1
                if bad_evals >= config.patience:
                    break
        model.load_state_dict(best_state)
    model.to(CPU)
    train_seconds = time.perf_counter() - start
    dev_ranks = _dev_test(model, dataset, DEV)
    test_ranks = _dev_test(model, dataset, TEST)
    report = {
        "name": name,
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "dev": hit_ndcg(dev_ranks),
        "test": hit_ndcg(test_ranks),
        "test_ci": ranking_report(test_ranks, seed=config.seed),
        "train_seconds": train_seconds,
        "threads": threads.history,  # torch threads per epoch (worker/threads.py)
        "epoch_seconds": epoch_seconds,
        "history": history,
        "config": asdict(config),
    }
    return model, report
