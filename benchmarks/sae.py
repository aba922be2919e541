"""Benchmark of the TopK SAE against its baselines on the vectors a real run probed (docs/method.md
§1.4, §2).

Reads each model's run under ``--data-dir`` (default: the configured data directory, where
``recsae demo`` and ``recsae run`` write): the run's ``probe.npz`` (:data:`core.rundir.PROBE`;
``reps`` [C, d] and the cases' ``side``, worker.cases TRAIN/DEV/TEST), loaded with
:class:`worker.artifacts.ProbeArrays`. ``--run`` picks a run by id; otherwise the run of that
recommender whose probe is newest. Without one it stops and says how to make one. Trains on
TRAIN, selects on DEV, measures on TEST. BPRMF's pipeline SAE also trains on fold-in vectors
(docs/method.md §1.4); this benchmark trains on the probed vectors alone.

Prints a table, and as its last line one JSON object with every figure; ``source`` names the
run and file each model's vectors came from, ``published`` the file of the authors' figures the
speed is compared with.

    .venv/bin/python benchmarks/sae.py [--quick] [--models bprmf sasrec] [--data-dir var]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import provenance, published  # noqa: E402
from core import rundir  # noqa: E402
from core.settings import get_settings  # noqa: E402
from worker.artifacts import ProbeArrays  # noqa: E402
from worker.cases import DEV, TEST, TRAIN  # noqa: E402
from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu  # noqa: E402
from worker.sae.baselines import pca_fvu, random_sae, train_dense_ae  # noqa: E402
from worker.sae.train import SAEConfig, encode_batched, train_sae  # noqa: E402
from worker.threads import governor  # noqa: E402

# Per model: the paper's s = 16, k = 8; lr / batch chosen on DEV FVU. One vector per user gives
# a few hundred training vectors, so BPRMF takes full-batch steps. Other models: the defaults.
CONFIGS = {
    "bprmf": SAEConfig(scale=16, k=8, lr=3e-3, batch_size=4096, patience=30),
    "sasrec": SAEConfig(scale=16, k=8, lr=3e-3, batch_size=4096, max_epochs=150, patience=10),
}


def find_run(data_dir: Path, model: str, run_id: str | None = None) -> Path:
    """The run directory whose probed vectors to use: ``run_id``'s, else the newest probe of a
    run of ``model``. Stops with what to do when there is none."""
    runs = data_dir / "runs"
    make = (
        f"make one with `.venv/bin/recsae run -r {model}` (the demo data; it writes "
        f"{runs}/<run>/{rundir.PROBE}), or point --data-dir at the data directory of a run "
        f"(benchmarks/pipeline.py keeps its runs in var/bench)"
    )
    if run_id is not None:
        path = runs / run_id
        if not (path / rundir.PROBE).is_file():
            raise SystemExit(f"run {run_id!r} has no {rundir.PROBE} under {runs}: {make}")
        return path
    found = []
    for config in runs.glob(f"*/{rundir.CONFIG}"):
        probe = config.parent / rundir.PROBE
        if probe.is_file() and json.loads(config.read_text()).get("recommender") == model:
            found.append((probe.stat().st_mtime_ns, config.parent))
    if not found:
        raise SystemExit(f"no run of {model} with probed vectors under {runs}: {make}")
    return max(found)[1]


def load_vectors(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(x [C, d], side [C], source): a run's probed vectors and where they came from."""
    probe = ProbeArrays.load(run_dir)
    config = json.loads((run_dir / rundir.CONFIG).read_text())
    source = {
        "run_id": run_dir.name,
        "file": str(run_dir / rundir.PROBE),
        "recommender": config.get("recommender"),
        "dataset": config.get("dataset_name"),
    }
    return probe.reps.astype(np.float32), probe.cases.side.astype(np.int8), source


def evaluate(
    run_dir: Path, config: SAEConfig, scales: tuple[int, ...], ae_epochs: int = 2000
) -> dict:
    """Every figure for one run's probed vectors (``ae_epochs``: the dense AE's epoch cap)."""
    x, side, source = load_vectors(run_dir)
    x_tr, x_dv, x_te = x[side == TRAIN], x[side == DEV], x[side == TEST]
    empty = [
        name for name, part in (("TRAIN", x_tr), ("DEV", x_dv), ("TEST", x_te)) if not len(part)
    ]
    if empty:
        raise SystemExit(f"{source['file']} has no {' or '.join(empty)} vectors: rerun its probe")
    t0 = time.perf_counter()
    sae, report = train_sae(x_tr, x_dv, config, progress=False)
    wall = time.perf_counter() - t0
    idx, val, x_hat = encode_batched(sae, x_te)
    rand = random_sae(x.shape[1], sae.n_latents, sae.k, x_tr.mean(0), seed=config.seed)
    _, _, x_hat_rand = encode_batched(rand, x_te)
    ae, ae_report = train_dense_ae(x_tr, x_dv, hidden=8, seed=config.seed, max_epochs=ae_epochs)
    with torch.inference_mode():
        ae_test = fvu(x_te, ae(torch.as_tensor(x_te)).numpy())
    out = {
        "source": source,
        "n": {"train": len(x_tr), "dev": len(x_dv), "test": len(x_te), "d": x.shape[1]},
        "config": asdict(config),
        "sae": {
            "fvu_train": report["fvu_train"],
            "fvu_dev": report["fvu_dev"],
            "fvu_test": fvu(x_te, x_hat),
            "dead_fraction": report["dead_fraction"],
            "dead_fraction_test": dead_fraction(fire_counts(idx, val, sae.n_latents)),
            "l0": report["l0"],
            "steps": report["steps"],
            "epochs": report["epochs"],
            "best_epoch": report["best_epoch"],
            "train_seconds": report["train_seconds"],
            "wall_seconds": wall,
            "vectors_per_second": report["vectors_per_second"],
        },
        "pca_fvu_test": pca_fvu(x_tr, x_te, config.k),
        "random_sae_fvu_test": fvu(x_te, x_hat_rand),
        "dense_ae8_fvu_test": ae_test,
        "dense_ae8_fvu_dev": ae_report["fvu_dev"],
        "scales": [],
    }
    for s in scales:
        s_sae, s_rep = train_sae(x_tr, x_dv, replace(config, scale=s), progress=False)
        _, _, s_hat = encode_batched(s_sae, x_te)
        out["scales"].append(
            {
                "scale": s,
                "fvu_train": s_rep["fvu_train"],
                "fvu_dev": s_rep["fvu_dev"],
                "fvu_test": fvu(x_te, s_hat),
                "dead_fraction": s_rep["dead_fraction"],
                "best_epoch": s_rep["best_epoch"],
            }
        )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bprmf", "sasrec"])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="where the runs are (default: the configured)"
    )
    parser.add_argument("--run", default=None, help="a run id (with one model only)")
    parser.add_argument("--quick", action="store_true", help="skip the scale sweep")
    parser.add_argument("--sweep-all", action="store_true", help="sweep SASRec's scale too")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="cap every SAE's (and the AE's) epochs"
    )
    args = parser.parse_args(argv)
    if args.run is not None and len(args.models) != 1:
        parser.error("--run names one run: give one model with --models")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data_dir = args.data_dir or get_settings().data_dir
    run_dirs = {model: find_run(data_dir, model, args.run) for model in args.models}
    theirs = published()
    governor(CONFIGS.get(args.models[0], SAEConfig()).threads)  # 0: the free cores
    models: dict[str, dict] = {}
    for model, run_dir in run_dirs.items():
        config = CONFIGS.get(model, SAEConfig())
        if args.max_epochs is not None:
            config = replace(config, max_epochs=args.max_epochs)
        # the SASRec sweep costs minutes per scale on a shared 2-core box: only with --sweep-all
        scales: tuple[int, ...] = ()
        if not args.quick and (model == "bprmf" or args.sweep_all):
            scales = (1, 2, 4, 8, 16, 32) if model == "bprmf" else (8, 16, 32)
        ae_epochs = 2000 if args.max_epochs is None else args.max_epochs
        r = models[model] = evaluate(run_dir, config, scales, ae_epochs)
        top = theirs["sae_vectors_per_second"].get(model)
        r["sae"]["their_vectors_per_second"] = top[1] if top else None
        r["sae"]["speedup_vs_theirs"] = r["sae"]["vectors_per_second"] / top[1] if top else None
    header = f"{'model':8} {'run':24} {'split':>17} {'FVU tr':>7} {'dev':>6} {'test':>6} "
    header += f"{'PCA-k':>6} {'rand':>6} {'AE-8':>6} {'dead':>6} {'vec/s':>9}"
    print(header)
    for model, r in models.items():
        n, s = r["n"], r["sae"]
        print(
            f"{model:8} {r['source']['run_id'][-24:]:24} {n['train']:>7}/{n['dev']}/{n['test']:<5} "
            f"{s['fvu_train']:7.4f} {s['fvu_dev']:6.3f} {s['fvu_test']:6.3f} "
            f"{r['pca_fvu_test']:6.3f} {r['random_sae_fvu_test']:6.3f} "
            f"{r['dense_ae8_fvu_test']:6.3f} {s['dead_fraction']:6.1%} "
            f"{s['vectors_per_second']:9.0f}"
        )
        for row in r["scales"]:
            print(
                f"  s={row['scale']:<3} FVU tr {row['fvu_train']:.4f} dev {row['fvu_dev']:.3f} "
                f"test {row['fvu_test']:.3f} dead {row['dead_fraction']:.1%} "
                f"best epoch {row['best_epoch']}"
            )
    out = {
        "benchmark": "sae",
        "models": models,
        "published": provenance(theirs),
        "loadavg_1min": os.getloadavg()[0],  # timings are only comparable at equal load
        "threads": torch.get_num_threads(),
    }
    print(f"load average (1 min) {out['loadavg_1min']:.1f} on {os.cpu_count()} CPUs; the "
          f"authors' speed: {theirs['file']} ({theirs['date']})")  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
