"""Benchmark of the TopK SAE against its baselines on probed recommender vectors (docs/method.md
§1.4, §2).

Reads ``var/vectors/{bprmf,sasrec}.npz`` (``x`` [C, d], ``side`` [C] with worker.cases
TRAIN/DEV/TEST) when the recommender stage has written them; otherwise builds stand-ins from
ml-latest-small (rating >= 4): BPRMF-like user factors from a truncated SVD of the user-item
matrix, and SASRec-like history vectors (recency-weighted, squashed sums of item factors over
the last 20 items at every history position). Trains on TRAIN, selects on DEV, measures on TEST.

Prints a table, and as its last line one JSON object with every figure.

    .venv/bin/python benchmarks/sae.py [--quick] [--models bprmf sasrec]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.cases import DEV, TEST, TRAIN  # noqa: E402
from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu  # noqa: E402
from worker.sae.baselines import pca_fvu, random_sae, train_dense_ae  # noqa: E402
from worker.sae.train import SAEConfig, encode_batched, train_sae  # noqa: E402
from worker.threads import governor  # noqa: E402

RATINGS = ROOT / "data" / "ml-latest-small" / "ratings.csv"
VECTORS = ROOT / "var" / "vectors"
D = 64
SEED = 0

# Per model: the paper's s = 16, k = 8; lr / batch chosen on DEV FVU. One vector per user gives
# a few hundred training vectors, so BPRMF takes full-batch steps.
CONFIGS = {
    "bprmf": SAEConfig(scale=16, k=8, lr=3e-3, batch_size=4096, patience=30),
    "sasrec": SAEConfig(scale=16, k=8, lr=3e-3, batch_size=4096, max_epochs=150, patience=10),
}


def _positive_sequences() -> tuple[list[np.ndarray], int]:
    """Per-user chronological positive items (rating >= 4) of ml-latest-small, ids remapped."""
    if not RATINGS.is_file():
        raise FileNotFoundError(f"{RATINGS} is missing: stand-in vectors need ml-latest-small")
    df = pd.read_csv(RATINGS)
    df = df[df.rating >= 4]
    df = df.sort_values(["userId", "timestamp", "movieId"])
    items = {m: i for i, m in enumerate(np.sort(df.movieId.unique()))}
    df["item"] = df.movieId.map(items)
    seqs = [g.item.to_numpy() for _, g in df.groupby("userId", sort=True)]
    return [s for s in seqs if len(s) >= 5], len(items)


def _item_user_factors(seqs: list[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD (d = 64) of the binary user x item matrix: (user [U, d], item [I, d]).

    Users get U S (their rows projected on the item factors), items V: scores U S V^T = the
    rank-64 approximation, like a factorisation model's dot product.
    """
    m = np.zeros((len(seqs), n_items), np.float32)
    for u, s in enumerate(seqs):
        m[u, s] = 1.0
    u_, s_, vt = np.linalg.svd(m, full_matrices=False)
    return (u_[:, :D] * s_[:D]).astype(np.float32), vt[:D].T.astype(np.float32)


def stand_in(model: str) -> tuple[np.ndarray, np.ndarray]:
    """(x [C, d], side [C]) stand-in vectors for ``model`` (see the module docstring)."""
    seqs, n_items = _positive_sequences()
    users, items = _item_user_factors(seqs, n_items)
    if model == "bprmf":
        order = np.random.default_rng(SEED).permutation(len(seqs))
        side = np.full(len(seqs), TRAIN, np.int8)
        n_test, n_dev = round(0.2 * len(seqs)), round(0.1 * len(seqs))
        side[order[:n_test]] = TEST
        side[order[n_test : n_test + n_dev]] = DEV
        return users, side
    if model == "sasrec":
        weights = 0.85 ** np.arange(20)[::-1]  # the most recent item weighs most
        xs, sides = [], []
        for s in seqs:
            n = len(s)
            for length in range(1, n):
                hist = items[s[max(0, length - 20) : length]]
                w = weights[-len(hist) :, None]
                xs.append(np.tanh(20.0 * (w * hist).sum(0) / w.sum()))
                sides.append(TRAIN if length < n - 2 else DEV if length == n - 2 else TEST)
        return np.asarray(xs, np.float32), np.asarray(sides, np.int8)
    raise ValueError(f"no stand-in for model {model!r}; known: bprmf, sasrec")


def load_vectors(model: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, side, source): the probed vectors if saved, else the stand-in."""
    path = VECTORS / f"{model}.npz"
    if path.is_file():
        data = np.load(path)
        return data["x"].astype(np.float32), data["side"].astype(np.int8), str(path)
    x, side = stand_in(model)
    return x, side, "stand-in"


def evaluate(model: str, config: SAEConfig, scales: tuple[int, ...]) -> dict:
    """Every figure for one model's vectors."""
    x, side, source = load_vectors(model)
    x_tr, x_dv, x_te = x[side == TRAIN], x[side == DEV], x[side == TEST]
    t0 = time.perf_counter()
    sae, report = train_sae(x_tr, x_dv, config, progress=False)
    wall = time.perf_counter() - t0
    idx, val, x_hat = encode_batched(sae, x_te)
    rand = random_sae(x.shape[1], sae.n_latents, sae.k, x_tr.mean(0), seed=config.seed)
    _, _, x_hat_rand = encode_batched(rand, x_te)
    ae, ae_report = train_dense_ae(x_tr, x_dv, hidden=8, seed=config.seed)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bprmf", "sasrec"])
    parser.add_argument("--quick", action="store_true", help="skip the scale sweep")
    parser.add_argument("--sweep-all", action="store_true", help="sweep SASRec's scale too")
    args = parser.parse_args()
    governor(CONFIGS[args.models[0]].threads)  # 0: the free cores (worker/threads.py)
    results = {}
    for model in args.models:
        # the SASRec sweep costs minutes per scale on a shared 2-core box: only with --sweep-all
        scales: tuple[int, ...] = ()
        if not args.quick and (model == "bprmf" or args.sweep_all):
            scales = (1, 2, 4, 8, 16, 32) if model == "bprmf" else (8, 16, 32)
        results[model] = evaluate(model, CONFIGS[model], scales)
    header = f"{'model':8} {'source':10} {'split':>17} {'FVU tr':>7} {'dev':>6} {'test':>6} "
    header += f"{'PCA-k':>6} {'rand':>6} {'AE-8':>6} {'dead':>6} {'vec/s':>9}"
    print(header)
    for model, r in results.items():
        n, s = r["n"], r["sae"]
        print(
            f"{model:8} {r['source'][-10:]:10} {n['train']:>7}/{n['dev']}/{n['test']:<5} "
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
    results["loadavg_1min"] = os.getloadavg()[0]  # timings are only comparable at equal load
    results["threads"] = torch.get_num_threads()
    print(f"load average (1 min) {results['loadavg_1min']:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
