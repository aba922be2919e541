"""Benchmark: are planted concepts recovered? (issue 2)

Synthetic data whose users prefer known tags (``worker.data.synthetic``) goes through the whole
pipeline; the figure is the fraction of planted tags that are the verified (confidence >= 0.8
and rejecting its null at 5%) TF-IDF concept of at least one latent. Target >= 0.8.

    .venv/bin/python benchmarks/planted.py [--models bprmf sasrec] [--users 3000] [--tags 20]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.reports import details_null_p, is_verified  # noqa: E402
from core.settings import Settings  # noqa: E402
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv  # noqa: E402
from worker.pipeline import STAGES, RunConfig, run_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["bprmf", "sasrec"])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="recsae-planted-"))
    raw, truth = generate(
        SyntheticConfig(
            n_users=args.users, n_items=args.items, n_tags=args.tags, tags_per_item=1,
            tags_per_user=2, mean_history=30, coherence=0.9, seed=args.seed,
        )
    )  # fmt: skip
    csv_dir = write_generic_csv(raw, root / "csv")
    settings = Settings(data_dir=root / "var")
    planted = set(truth.tags)
    rows = {}
    for model in args.models:
        start = time.perf_counter()
        config = RunConfig(
            recommender=model, dataset_format="generic", dataset_path=str(csv_dir),
            dataset_name="planted", rating_threshold=None, seed=args.seed,
            recommender_overrides={"epochs": 30},
        )  # fmt: skip
        run = run_pipeline(config, settings=settings, stages=STAGES[:-1])  # no DB needed
        concepts = run.interpretation.sae.concepts
        # docs/method.md §1.11: confidence >= 0.8 and null p <= 0.05 (one definition)
        ok = [is_verified(c.confidence, details_null_p(c.details)) for c in concepts]
        verified = {c.text for c, v in zip(concepts, ok, strict=True) if v}
        found = planted & verified
        rows[model] = {
            "planted": len(planted),
            "recovered": len(found),
            "fraction": len(found) / len(planted),
            "verified_latents": sum(ok),
            "n_latents": len(concepts),
            "missing": sorted(planted - verified),
            "seconds": time.perf_counter() - start,
        }
    print(
        f"\n{'model':8} {'recovered':>10} {'fraction':>9} {'verified latents':>17} {'seconds':>8}"
    )
    for model, r in rows.items():
        print(f"{model:8} {r['recovered']:>4}/{r['planted']:<5} {r['fraction']:9.2f} "
              f"{r['verified_latents']:>8}/{r['n_latents']:<8} {r['seconds']:8.1f}")  # fmt: skip
    print(json.dumps({"benchmark": "planted", "target": 0.8, "models": rows}))


if __name__ == "__main__":
    main()
