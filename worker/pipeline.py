"""The pipeline, as a table of contents (docs/architecture.md): each stage's name and the function
that runs it, in order (``worker.stages.<name>``; docs/method.md §1 says what each computes).

Each stage reads what the stages before it left in the run directory (:class:`worker.run.Run`)
and writes its own files there (names in :mod:`core.rundir`), so a stage can be rerun alone and a
finished stage is skipped unless forced. Only ``publish`` touches the database, in one
transaction (``core.store.writes.publish_run``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.settings import Settings
from worker.errors import ConfigError
from worker.run import DEMO_DATA, STAGES, Run, RunConfig
from worker.stages.evaluate import evaluate
from worker.stages.explain_llm import explain_llm
from worker.stages.interpret import interpret
from worker.stages.prepare import prepare
from worker.stages.probe import probe
from worker.stages.publish import publish
from worker.stages.record import record
from worker.stages.sweep import sweep
from worker.stages.train_recommender import train_recommender
from worker.stages.train_sae import train_sae

Stage = Callable[[Run], None]

PIPELINE: tuple[tuple[str, Stage], ...] = (
    ("prepare", prepare),
    ("train_recommender", train_recommender),
    ("probe", probe),
    ("train_sae", train_sae),
    ("record", record),
    ("interpret", interpret),
    ("explain_llm", explain_llm),
    ("evaluate", evaluate),
    ("sweep", sweep),
    ("publish", publish),
)
if tuple(name for name, _ in PIPELINE) != STAGES:  # Run invalidates stages in STAGES' order
    raise RuntimeError(f"PIPELINE's names {[n for n, _ in PIPELINE]} differ from STAGES {STAGES}")

__all__ = ["DEMO_DATA", "PIPELINE", "STAGES", "Run", "RunConfig", "run_pipeline"]


def run_pipeline(
    config: RunConfig,
    settings: Settings | None = None,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Run:
    """Run the given stages in order, skipping finished ones unless ``force``.

    A stage counts as finished when its marker and every file it always writes are there; after
    a stage runs, every later stage is stale (its marker goes).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    run = Run(config, settings, log)
    for i, (name, stage) in enumerate(PIPELINE):
        if name not in stages:
            continue
        finished = run.done(name) and run.outputs_present(name)
        if finished and not force and name != "publish":
            log(f"[{config.run_id}] {name}: done already (use --force to recompute)")
            continue
        log(f"[{config.run_id}] {name} ...")
        start = time.perf_counter()
        stage(run)
        seconds = time.perf_counter() - start
        run.mark_done(name, seconds)
        for later, _ in PIPELINE[i + 1 :]:  # what depended on it is now stale
            run.clear_done(later)
        log(f"[{config.run_id}] {name}: {seconds:.1f}s")
    return run
