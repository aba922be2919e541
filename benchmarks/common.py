"""What the benchmarks share: runs of the pipeline on the demo data, kept in one data directory
(``var/bench`` by default) so one benchmark reuses what another computed, and the authors'
published figures (``benchmarks/published.json``, with their source and date). A stage finished
before is reused and not timed again: :func:`run_demo` says which stages ran in this process
(with their seconds) and which were reused; ``--fresh`` starts from an empty temporary
directory, so every stage runs."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core import rundir  # noqa: E402
from core.settings import Settings  # noqa: E402
from worker.pipeline import STAGES, Run, RunConfig, run_pipeline  # noqa: E402

DEFAULT_DATA_DIR = ROOT / "var" / "bench"
PUBLISHED = ROOT / "benchmarks" / "published.json"


def add_run_arguments(parser: argparse.ArgumentParser, models: list[str]) -> None:
    parser.add_argument("--models", nargs="+", default=models, help="recommenders to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where runs live (reused)"
    )
    parser.add_argument("--fresh", action="store_true", help="use a new temporary data dir")


@dataclass
class DemoRun:
    """A run as this benchmark left it: which stages it ran (their seconds, measured now) and
    which it found finished and reused (their timings are an earlier process's: not reported)."""

    run: Run
    ran: dict[str, float]
    reused: list[str]


def _marker(run_dir: Path, stage: str) -> tuple[int, int, str] | None:
    """A stage's done marker as it is now (inode, mtime, content), None when absent: a stage
    that runs rewrites its marker (``Run.mark_done``)."""
    path = run_dir / rundir.done_marker(stage)
    try:
        st = path.stat()
        return st.st_ino, st.st_mtime_ns, path.read_text()
    except FileNotFoundError:
        return None


def run_demo(args: argparse.Namespace, **config: Any) -> dict[str, DemoRun]:
    """Each model's run on the demo data, computed (or reused) through the whole pipeline."""
    data_dir = Path(tempfile.mkdtemp(prefix="recsae-bench-")) if args.fresh else args.data_dir
    settings = Settings(data_dir=data_dir)
    out = {}
    for model in args.models:
        run_config = RunConfig(recommender=model, seed=args.seed, **config)
        run_dir = settings.runs_dir / run_config.run_id
        before = {stage: _marker(run_dir, stage) for stage in STAGES}
        run = run_pipeline(run_config, settings)
        ran, reused = {}, []
        for stage, seconds in run.timings().items():
            if _marker(run.dir, stage) != before[stage]:
                ran[stage] = seconds
            else:
                reused.append(stage)
        out[model] = DemoRun(run, ran, reused)
    return out


def demo_runs(args: argparse.Namespace, **config: Any) -> dict[str, Run]:
    """Each model's run on the demo data, computed (or reused) through the whole pipeline."""
    return {model: r.run for model, r in run_demo(args, **config).items()}


def read(run: Run, name: str) -> Any:
    return json.loads((run.dir / name).read_text())


def published() -> dict[str, Any]:
    """The authors' figures (``benchmarks/published.json``), with ``file`` naming the file: every
    comparison with their numbers reads them here, and its JSON carries ``file``, ``source`` and
    ``date``."""
    figures = json.loads(PUBLISHED.read_text())
    missing = [k for k in ("source", "date") if k not in figures]
    if missing:
        raise SystemExit(f"{PUBLISHED} lacks {missing}: every published figure needs both")
    return {**figures, "file": str(PUBLISHED.relative_to(ROOT))}


def provenance(figures: dict[str, Any]) -> dict[str, str]:
    """What a benchmark's JSON says about the published figures it compared with."""
    return {k: figures[k] for k in ("file", "source", "date")}
