"""Benchmark the data stage at MovieLens-1M size on synthetic data with planted concepts.

Stages: generate (6,040 users, 3,706 items, 1,000,209 interactions), write it in the generic
CSV layout, read it back, preprocess it (docs/method.md §1.1), save the Dataset. Prints a table
(stage, seconds, rows) and, as its last line, one JSON object with the figures.

    .venv/bin/python benchmarks/synthetic.py [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from worker.data.preprocess import PrepareConfig, preprocess
from worker.data.readers import read_dataset
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = SyntheticConfig.ml1m(seed=args.seed)
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        raw, truth = generate(config)
        rows.append(("generate", time.perf_counter() - start, len(raw.interactions)))

        start = time.perf_counter()
        write_generic_csv(raw, Path(tmp) / "csv")
        rows.append(("write generic csv", time.perf_counter() - start, len(raw.interactions)))

        start = time.perf_counter()
        back = read_dataset("generic", Path(tmp) / "csv", name=raw.name)
        rows.append(("read generic csv", time.perf_counter() - start, len(back.interactions)))

        start = time.perf_counter()
        dataset = preprocess(back, PrepareConfig(), log=None)
        rows.append(("preprocess", time.perf_counter() - start, dataset.stats["interactions"]))

        start = time.perf_counter()
        dataset.save(Path(tmp) / "prepared")
        rows.append(("save dataset", time.perf_counter() - start, dataset.stats["interactions"]))

    print(f"{'stage':<20}{'seconds':>10}{'rows':>12}")
    for stage, seconds, n in rows:
        print(f"{stage:<20}{seconds:>10.2f}{n:>12,}")
    figures = {
        "seed": args.seed,
        "seconds": {stage: round(seconds, 3) for stage, seconds, _ in rows},
        "planted_coherence": round(float(truth.coherent.mean()), 4),
        **{
            k: dataset.stats[k] for k in ("users", "items", "interactions", "train", "kcore_rounds")
        },
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
