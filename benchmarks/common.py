"""What the benchmarks share: runs of the pipeline on the demo data, kept in one data directory
(``var/bench`` by default) so one benchmark reuses what another computed. Reused stages keep the
timings recorded when they ran; ``--fresh`` starts from an empty temporary directory."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.settings import Settings  # noqa: E402
from worker.pipeline import Run, RunConfig, run_pipeline  # noqa: E402

DEFAULT_DATA_DIR = ROOT / "var" / "bench"


def add_run_arguments(parser: argparse.ArgumentParser, models: list[str]) -> None:
    parser.add_argument("--models", nargs="+", default=models, help="recommenders to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where runs live (reused)"
    )
    parser.add_argument("--fresh", action="store_true", help="use a new temporary data dir")


def demo_runs(args: argparse.Namespace, **config: Any) -> dict[str, Run]:
    """Each model's run on the demo data, computed (or reused) through the whole pipeline."""
    data_dir = Path(tempfile.mkdtemp(prefix="recsae-bench-")) if args.fresh else args.data_dir
    settings = Settings(data_dir=data_dir)
    return {
        model: run_pipeline(RunConfig(recommender=model, seed=args.seed, **config), settings)
        for model in args.models
    }


def read(run: Run, name: str) -> Any:
    return json.loads((run.dir / name).read_text())
