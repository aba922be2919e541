"""Benchmark of the whole pipeline on the demo data (issue 2): quality against the authors' code
(docs/method.md §2) and speed of every stage.

Runs the pipeline for each model in ``var/bench`` (reusing finished stages and their recorded
timings; ``--fresh`` for a new temporary directory), then
prints, per model: NDCG@10 and HR@10 with 95% bootstrap CIs for MostPop, the base model, the
model with x replaced by the SAE's x_hat and by a random SAE's x_hat; FVU on held-out vectors
beside PCA-k's; the dead-latent fraction; TF-IDF concepts with confidence >= 0.8; wall time of
every stage and the SAE's training vectors per second; for one-vector models the SAE NDCG on
held-out users (``sae_retained_heldout``) and FVU over PCA-k's (``fvu_over_pca``; issue 9 targets
<= 0.8 with n_latents >= 4·d). For BPRMF it also sweeps the SAE scale s on the real training
vectors alone, without fold-ins (docs/method.md §1.4): the reason the fold-ins exist.

    .venv/bin/python benchmarks/pipeline.py [--models bprmf sasrec] [--fresh]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import time

from common import add_run_arguments, demo_runs, read

from core.rundir import REPORT, SAE_REPORT
from worker.cases import DEV, TEST, TRAIN
from worker.run import Run
from worker.sweep import sensitivity_sweep

# docs/method.md §2: the authors' code on the same split (NDCG@10), and the issue's targets.
THEIRS = {"mostpop": 0.0235, "bprmf": 0.0267, "sasrec": 0.0540}
TARGET_NDCG = {"bprmf": 0.027, "sasrec": 0.054}
THEIR_VECTORS_PER_S = {"bprmf": 6_000, "sasrec": 36_000}  # the top of their range


def _ci(d: dict) -> str:
    return f"{d['mean']:.4f} [{d['lo']:.4f}, {d['hi']:.4f}]"


def _retained(ranking: dict) -> float | None:
    """SAE ÷ base NDCG@10 of one Table 7 split (None when the run has no such split)."""
    if "sae" not in ranking or "base" not in ranking:
        return None
    base = ranking["base"]["ndcg@10"]["mean"]
    return ranking["sae"]["ndcg@10"]["mean"] / base if base else None


def scale_sweep(run: Run, scales: tuple[int, ...], seed: int) -> list[dict]:
    """Dead fraction and held-out FVU of BPRMF's SAE for several scales s (k = 8)."""
    reps, side = run.probe.reps, run.probe.cases.side
    x_train, x_dev, x_test = reps[side == TRAIN], reps[side == DEV], reps[side == TEST]
    return sensitivity_sweep(x_train, x_dev, x_test, scales=scales, ks=(8,), seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_run_arguments(parser, ["bprmf", "sasrec"])
    parser.add_argument("--no-sweep", action="store_true", help="skip BPRMF's scale sweep")
    args = parser.parse_args()

    start = time.perf_counter()
    runs = demo_runs(args)
    wall = time.perf_counter() - start
    figures: dict[str, dict] = {}
    for model, run in runs.items():
        sae, report = read(run, SAE_REPORT), read(run, REPORT)
        ranking = sae["ranking"]
        base = ranking["base"]["ndcg@10"]["mean"]
        figures[model] = {
            "ndcg@10": {k: ranking[k]["ndcg@10"] for k in ranking},
            "hr@10": {k: ranking[k]["hr@10"] for k in ranking},
            "sae_retained": ranking["sae"]["ndcg@10"]["mean"] / base if base else None,
            "fvu_test": sae["fvu_test"],
            "pca_fvu_test": sae["pca_fvu_test"],
            "random_sae_fvu_test": sae["random_sae_fvu_test"],
            "dead_fraction": sae["dead_fraction"],
            "n_latents": sae["n_latents"],
            "d": run.probe.reps.shape[1],
            # issue 9: held-out FVU over PCA-k's (target <= 0.8), SAE NDCG / base NDCG on the
            # users whose vectors never trained the SAE (target >= 0.9)
            "fvu_over_pca": sae["fvu_test"] / sae["pca_fvu_test"] if sae["pca_fvu_test"] else None,
            "sae_retained_heldout": _retained(sae.get("ranking_heldout") or {}),
            "sae_retained_trained": _retained(sae.get("ranking_trained") or {}),
            "n_fold_in_vectors": sae.get("n_fold_in_vectors"),
            "tfidf_verified": report["table4"]["sae"]["latents_verified"],
            "tfidf_verified_base": report["table4"]["base"]["latents_verified"],
            "sae_vectors_per_second": sae["vectors_per_second"],
            "sae_speedup_vs_theirs": sae["vectors_per_second"] / THEIR_VECTORS_PER_S[model]
            if model in THEIR_VECTORS_PER_S
            else None,
            "stage_seconds": run.timings(),
            "pipeline_seconds": sum(run.timings().values()),
        }
        if model == "bprmf" and not args.no_sweep:
            figures[model]["scale_sweep"] = scale_sweep(run, (1, 2, 4, 8, 16), args.seed)

    print()
    print(f"{'model':8} {'variant':11} {'NDCG@10 [95% CI]':28} {'HR@10 [95% CI]':28}")
    for model, f in figures.items():
        for variant in ("mostpop", "base", "sae", "random_sae", "ae"):
            if variant in f["ndcg@10"]:
                print(f"{model:8} {variant:11} {_ci(f['ndcg@10'][variant]):28} "
                      f"{_ci(f['hr@10'][variant]):28}")  # fmt: skip
    print()
    print(f"{'model':8} {'latents':>7} {'FVU test':>9} {'PCA-k':>7} {'ratio':>6} {'random':>7} "
          f"{'dead':>6} {'kept h-o':>8} {'verified':>9} {'base ver.':>9} {'SAE vec/s':>10} "
          f"{'stages s':>8}")  # fmt: skip
    for model, f in figures.items():
        kept = f["sae_retained_heldout"]
        print(f"{model:8} {f['n_latents']:7d} {f['fvu_test']:9.3f} {f['pca_fvu_test']:7.3f} "
              f"{f['fvu_over_pca']:6.3f} {f['random_sae_fvu_test']:7.3f} {f['dead_fraction']:6.1%} "
              f"{'—' if kept is None else f'{kept:.1%}':>8} {f['tfidf_verified']:9d} "
              f"{f['tfidf_verified_base']:9d} {f['sae_vectors_per_second']:10.0f} "
              f"{f['pipeline_seconds']:7.1f}")  # fmt: skip
    for model, f in figures.items():
        print(f"{model} stage seconds: " + ", ".join(
            f"{k} {v:.1f}" for k, v in f["stage_seconds"].items()))  # fmt: skip
        for row in f.get("scale_sweep", []):
            print(f"  {model} SAE scale {row['scale']:2d} ({row['n_latents']:4d} latents): dead "
                  f"{row['dead_fraction']:.1%}, FVU test {row['fvu_test']:.3f} "
                  f"(PCA-8 {row['pca_fvu_test']:.3f})")  # fmt: skip
    print(f"wall time of this benchmark (finished stages reused): {wall:.1f} s")
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "data_dir": str(runs[args.models[0]].settings.data_dir),
                "models": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
