"""The pipeline, as a table of contents (docs/architecture.md): each stage's name and the function
that runs it, in order (``worker.stages.<name>``; docs/method.md §1 says what each computes).

Each stage reads what the stages before it left in the run directory (:class:`worker.run.Run`)
and writes its own files there (names in :mod:`core.rundir`), so a stage can be rerun alone and a
finished stage is skipped unless forced. Finished means its marker is there and every file it
wrote still matches the marker's digests; the marker goes before the stage writes anything and
comes back only after all its files are complete (docs/architecture.md, stage markers). Only
``publish`` touches the database, in one transaction (``core.store.writes.publish_run``).
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

    A stage counts as finished when its marker is there, written for this config, and every file
    it wrote is unchanged (:meth:`Run.unfinished`; ``publish`` always runs). Before a stage runs,
    its marker and every later stage's go (a stage killed halfway is never "done" with a mix of
    old and new files, and what read its old files is stale); its marker is written once all its
    files are complete.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    run = Run(config, settings, log)
    for i, (name, stage) in enumerate(PIPELINE):
        if name not in stages:
            continue
        always = force or name == "publish"
        why = None if always else run.unfinished(name)
        if not always and why is None:
            log(f"[{config.run_id}] {name}: done already (use --force to recompute)")
            continue
        stale = f" (recomputing: {why})" if why is not None and run.done(name) else ""
        log(f"[{config.run_id}] {name} ...{stale}")
        for later, _ in PIPELINE[i:]:  # itself and what depends on it, before anything is written
            run.clear_done(later)
        start = time.perf_counter()
        stage(run)
        seconds = time.perf_counter() - start
        run.mark_done(name, seconds)
        log(f"[{config.run_id}] {name}: {seconds:.1f}s")
    return run
