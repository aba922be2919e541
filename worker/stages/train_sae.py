"""train_sae: the TopK SAE on TRAIN vectors, selected on dev, measured on held-out vectors beside
its baselines (PCA-k, a random SAE, a dense autoencoder) and in the model (docs/method.md §1.4,
Table 7)."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jsonsafe import jsonable
from core.reports import RankingCI, SAEReport
from core.rundir import SAE_CFG, SAE_DIR, SAE_REPORT
from worker.cases import DEV, TEST, TRAIN, Cases
from worker.data.dataset import Dataset
from worker.device import resolve_device
from worker.errors import ConfigError
from worker.metrics.ranking import paired_ndcg_difference, per_case_ndcg, ranking_report
from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu, l0
from worker.probe import rank_targets, user_vector_cases
from worker.recommenders.io import load_recommender
from worker.run import Run, RunConfig
from worker.sae.augment import FoldInConfig, fold_in_vectors
from worker.sae.baselines import pca_fvu, random_sae, train_dense_ae
from worker.sae.io import load_sae, save_sae
from worker.sae.model import TopKSAE
from worker.sae.train import SAEConfig, encode_batched
from worker.sae.train import train_sae as train
from worker.threads import governor

# Sequential models' SAE: at most this many steps of 4,096 vectors (docs/deviations.md, issue
# 12). The demo's ~40k position vectors stop long before (150 epochs x 10 steps); ML-1M's ~940k
# took ~90 epochs, 21k steps, 437 s. The dense-AE baseline gets the same budget.
SEQUENTIAL_MAX_STEPS = 6000
# A dictionary has more latents than dimensions: one-vector models get at least 4·d latents
# (docs/method.md §1.4), fed by fold-in vectors.
MIN_ONE_VECTOR_SCALE = 4


def dev_cases(dataset: Dataset, cases: Cases, sequential: bool) -> tuple[Cases, np.ndarray]:
    """DEV-side cases whose targets are dev items (never the test item), with their index."""
    dev_index = np.flatnonzero(cases.side == DEV)
    dev = cases.subset(dev_index)
    if not sequential:  # one vector per user: score it against the user's dev item instead
        dev = Cases(dev.user, dev.length - 1, dev.side)
    return dev, dev_index


def auto_scale(n_train: int, d: int, sequential: bool) -> int:
    """The SAE scale s when the run does not fix one (see ``RunConfig.sae_scale``)."""
    if sequential:
        return 16
    scale = 16
    while scale > MIN_ONE_VECTOR_SCALE and scale * d > n_train / 3:
        scale //= 2
    return scale


def fold_in_training_vectors(run: Run, x_train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """One-vector models: ``x_train`` plus fold-ins of sub-sampled TRAIN-side histories
    (worker/sae/augment.py); sequential models and ``sae_fold_ins = 0``: ``x_train`` as is."""
    cfg, probe, dataset = run.config, run.probe, run.dataset
    if probe.sequential or cfg.sae_fold_ins <= 0:
        return x_train, {}
    cases = probe.cases
    users = cases.user[cases.side == TRAIN]
    # The user's training items: the whole sequence but its dev and test items (§1.1).
    histories = [dataset.sequences[u][:-2] for u in users]
    model = load_recommender(run.dir)
    fold = fold_in_vectors(
        probe.item_emb, histories, x_train, FoldInConfig(per_user=cfg.sae_fold_ins, seed=cfg.seed),
        partial_reps=model.partial_history_reps, train_users=users,
    )  # fmt: skip
    how = f"{fold.steps} fold-in steps" if fold.steps else f"{model.name}'s own representation"
    run.log(
        f"  {len(fold.vectors):,} vectors from {fold.n_users} training users' sub-sampled "
        f"histories ({how}, error on full histories {fold.calibration_error[fold.steps]:.3f})"
    )
    info = {
        "n_fold_in_vectors": len(fold.vectors),
        "fold_in_steps": fold.steps,
        "fold_in_calibration_error": fold.calibration_error,
    }
    return np.concatenate([x_train, fold.vectors]), info


def sae_config(cfg: RunConfig, sequential: bool, train_shape: tuple[int, ...]) -> SAEConfig:
    """SAEConfig for this run: per-kind defaults (measured in benchmarks/sae.py), then overrides.

    Sequential models give ~40k training vectors: bounded epochs keep the demo fast (dev FVU
    moves by < 0.01 after ~150 epochs). One vector per user gives a few hundred: full-batch steps
    and a longer patience, early-stopped on dev FVU so the SAE does not memorise (docs/method.md
    §1.4).
    """
    known = {f.name for f in fields(SAEConfig)}
    unknown = sorted(set(cfg.sae_overrides) - known)
    if unknown:
        raise ConfigError(f"the SAE has no config field(s) {unknown}; its fields: {sorted(known)}")
    n_train, d = train_shape
    scale = cfg.sae_scale or auto_scale(n_train, d, sequential)
    kind: dict[str, Any] = (
        {
            "lr": 3e-3,
            "batch_size": 4096,
            "max_epochs": 150,
            "patience": 10,
            "max_steps": SEQUENTIAL_MAX_STEPS,
        }
        if sequential
        else {"lr": 3e-3, "batch_size": 4096, "patience": 30}
    )
    return SAEConfig(scale=scale, k=cfg.sae_k, seed=cfg.seed, **{**kind, **cfg.sae_overrides})


def _ae_epochs(n_fit: int, config: SAEConfig, default: int = 2000) -> int:
    """The dense AE's epoch cap: its default, or fewer when the SAE has a step budget (the
    baseline then trains on as many batches as the SAE may)."""
    if config.max_steps is None:
        return default
    steps_per_epoch = -(-n_fit // min(config.batch_size, n_fit))
    return max(1, min(default, -(-config.max_steps // steps_per_epoch)))


def _dense_reconstruct(ae: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = ae(torch.as_tensor(x, dtype=torch.float32)).numpy()
        return out


def train_sae(run: Run) -> None:
    cfg, dataset, probe = run.config, run.dataset, run.probe
    cases, reps, item_emb = probe.cases, probe.reps, probe.item_emb
    imported = imported_sae_dir(cfg)
    if imported is not None:  # an SAE trained elsewhere (docs/import.md): measured, not trained
        _use_imported_sae(run, imported)
        return
    x_train, fold_info = fold_in_training_vectors(run, reps[cases.side == TRAIN])
    dev, dev_index = dev_cases(dataset, cases, probe.sequential)
    x_dev = reps[dev_index]

    # docs/method.md §1.4: select on dev NDCG of the reconstruction, per dev case, so the veto
    # compares checkpoints paired per case (worker/sae/selection.py)
    def dev_ndcg(sae: TopKSAE) -> np.ndarray:
        _, _, x_hat = encode_batched(sae, x_dev)
        return per_case_ndcg(rank_targets(item_emb, x_hat, dataset, dev), 10)

    config = sae_config(cfg, probe.sequential, x_train.shape)
    # The veto's tolerance is the paired 95% half-width of the per-case NDCG difference to the
    # best checkpoint (score_tolerance None; a number in --set sae.score_tolerance fixes it): the
    # base model's CI half-width used before (0.030) exceeded BPRMF's dev NDCG (0.025) and
    # never vetoed (docs/method.md §1.4).
    device = resolve_device(run.settings.device)  # worker/device.py: steps there, the rest on CPU
    sae, raw = train(x_train, x_dev, config, dev_score_fn=dev_ndcg, device=device)
    raw.update(fold_info)
    save_sae(sae, config, run.path(SAE_DIR))  # later stages load it back (eval mode)
    raw.update(_held_out(run, sae, config, x_train))
    raw.pop("history", None)
    report = SAEReport.model_validate(jsonable(raw))
    run.write_report(SAE_REPORT, report)
    ranking = report.ranking
    run.log(
        f"  SAE: FVU test {report.fvu_test:.3f} (PCA-{config.k} {report.pca_fvu_test:.3f}, "
        f"random {report.random_sae_fvu_test:.3f}), dead {report.dead_fraction:.1%}, "
        f"NDCG@10 {ranking['sae']['ndcg@10'].mean:.4f} vs base "
        f"{ranking['base']['ndcg@10'].mean:.4f}, {report.vectors_per_second:.0f} vectors/s"
    )


def imported_sae_dir(cfg: RunConfig) -> Path | None:
    """The SAE ``recsae import --sae`` left in the run's import directory, if any."""
    if not cfg.recommender.startswith("imported"):
        return None
    path = Path(cfg.recommender_overrides.get("source", "")) / SAE_DIR
    return path if (path / SAE_CFG).is_file() else None


def _use_imported_sae(run: Run, directory: Path) -> None:
    """Copy the imported SAE into the run and report it exactly as a trained one (held-out FVU,
    PCA-k, random SAE, dense AE, Table 7); dead = never active on the TRAIN-side vectors."""
    probe = run.probe
    x_train = probe.reps[probe.cases.side == TRAIN]
    x_dev = probe.reps[dev_cases(run.dataset, probe.cases, probe.sequential)[1]]
    sae = load_sae(directory)
    if sae.d_in != x_train.shape[1]:
        raise ConfigError(f"{directory}: the SAE's d_in {sae.d_in} != d {x_train.shape[1]}")
    d = x_train.shape[1]
    config = SAEConfig(scale=max(1, round(sae.n_latents / d)), k=sae.k, seed=run.config.seed)
    save_sae(sae, None, run.path(SAE_DIR))
    idx_tr, val_tr, x_hat_tr = encode_batched(sae, x_train)
    raw: dict[str, Any] = {
        "imported_from": str(directory),
        "n_latents": sae.n_latents,
        "fvu_train": fvu(x_train, x_hat_tr),
        "fvu_dev": fvu(x_dev, encode_batched(sae, x_dev)[2]),
        "dead_fraction": dead_fraction(fire_counts(idx_tr, val_tr, sae.n_latents)),
        "l0": l0(val_tr),
    }
    raw.update(_held_out(run, sae, config, x_train))
    report = SAEReport.model_validate(jsonable(raw))
    run.write_report(SAE_REPORT, report)
    run.log(
        f"  imported SAE: FVU test {report.fvu_test:.3f} (PCA-{config.k} "
        f"{report.pca_fvu_test:.3f}), dead {report.dead_fraction:.1%}"
    )


def _held_out(run: Run, sae: TopKSAE, config: SAEConfig, x_fit: np.ndarray) -> dict[str, Any]:
    """Table 7 and docs/method.md §1.4: the model with x replaced by x_hat (SAE, random SAE, dense
    AE), on every user's test case; FVU on vectors the SAE never trained on, beside PCA-k."""
    dataset, probe, seed = run.dataset, run.probe, run.config.seed
    cases, reps, item_emb = probe.cases, probe.reps, probe.item_emb
    x_train, x_test = reps[cases.side == TRAIN], reps[cases.side == TEST]
    x_dev = reps[dev_cases(dataset, cases, probe.sequential)[1]]
    user_cases = user_vector_cases(dataset)
    user_vectors = run.user_vectors
    # The SAE's own initial b_dec: the mean of what it trained on, fold-ins included
    # (worker/sae/train.py: init_sae), so the two differ in training alone (docs/method.md §1.9).
    rand = random_sae(reps.shape[1], config.scale * reps.shape[1], config.k,
                      b_dec=x_fit.mean(0), seed=seed)  # fmt: skip
    # The SAE's data and batch size (fold-ins make it tens of thousands of vectors).
    ae, ae_report = train_dense_ae(
        x_fit, x_dev, hidden=8, seed=seed, batch_size=config.batch_size,
        max_epochs=_ae_epochs(len(x_fit), config), threads=governor(config.threads).threads,
    )  # fmt: skip
    recon = {
        "sae": encode_batched(sae, user_vectors)[2],
        "random_sae": encode_batched(rand, user_vectors)[2],
        "ae": _dense_reconstruct(ae, user_vectors),
    }
    mostpop: RankingCI = run.recommender_report().mostpop_test_ci
    ranks = {"base": rank_targets(item_emb, user_vectors, dataset, user_cases)}
    for name, x_hat in recon.items():
        ranks[name] = rank_targets(item_emb, x_hat, dataset, user_cases)
    ranking: dict[str, dict[str, Any]] = {
        "mostpop": {metric: ci.to_json() for metric, ci in mostpop.items()},
        **{name: ranking_report(r, seed=seed) for name, r in ranks.items()},
    }
    # Paired: the same users with x and with x_hat (docs/method.md §1.9), seeded with the run's.
    paired = {name: paired_ndcg_difference(ranks[name], ranks["base"], seed=seed) for name in recon}
    # Users any of whose vectors trained the SAE vs the rest: for one-vector models the mix
    # above is partly measured on the SAE's own training vectors (docs/method.md §1.9).
    trained = np.isin(user_cases.user, np.unique(cases.user[cases.side == TRAIN]))
    splits = {
        f"ranking_{split}": {name: ranking_report(r[mask], seed=seed) for name, r in ranks.items()}
        for split, mask in (("heldout", ~trained), ("trained", trained))
        if mask.any()
    }
    return dict(
        **splits,
        n_heldout_users=int((~trained).sum()),
        n_trained_users=int(trained.sum()),
        fvu_test=fvu(x_test, encode_batched(sae, x_test)[2]),
        # PCA-k fitted on what the SAE trained on (fold-ins included): the stricter baseline.
        pca_fvu_test=pca_fvu(x_fit, x_test, config.k),
        random_sae_fvu_test=fvu(x_test, encode_batched(rand, x_test)[2]),
        ae_fvu_test=fvu(x_test, _dense_reconstruct(ae, x_test)),
        ae=ae_report,
        n_train_vectors=len(x_train),
        n_dev_vectors=len(x_dev),
        n_test_vectors=len(x_test),
        config=asdict(config),
        ranking=ranking,
        ranking_paired=paired,
    )
