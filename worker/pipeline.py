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

from core import rundir
from core.progress import ProgressTracker, Step
from core.settings import Settings, get_settings
from worker.errors import ConfigError
from worker.run import DEMO_DATA, STAGES, Run, RunConfig, config_digest, stage_seconds
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

__all__ = ["DEMO_DATA", "PIPELINE", "STAGES", "Run", "RunConfig", "pending_stages", "run_pipeline"]


def pending_stages(
    config: RunConfig, settings: Settings | None = None, stages: tuple[str, ...] = STAGES
) -> list[str]:
    """The stages of ``stages`` that would run for ``config`` (``publish`` always does), read
    from the markers alone: unlike :class:`Run` this writes nothing and clears nothing."""
    run_dir = (settings or get_settings()).runs_dir / config.run_id
    return [
        name
        for name in STAGES
        if name in stages
        and (name == "publish" or rundir.marker_problem(run_dir, name, config_digest(config, name)))
    ]


def _estimate(config: RunConfig, settings: Settings, name: str, force: bool) -> float | None:
    """Seconds ``name`` should take: none if it is finished (it will be skipped), else what it
    took last time with this config (its marker, if still there), else not known."""
    run_dir = settings.runs_dir / config.run_id
    digest = config_digest(config, name)
    if not force and name != "publish" and rundir.marker_problem(run_dir, name, digest) is None:
        return 0.0
    return stage_seconds(run_dir, name, digest)


def run_pipeline(
    config: RunConfig,
    settings: Settings | None = None,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: ProgressTracker | None = None,
) -> Run:
    """Run the given stages in order, skipping finished ones unless ``force``.

    A stage counts as finished when its marker is there, written for this config, and every file
    it wrote is unchanged (:meth:`Run.unfinished`; ``publish`` always runs). Before a stage runs,
    its marker and every later stage's go (a stage killed halfway is never "done" with a mix of
    old and new files, and what read its old files is stale); its marker is written once all its
    files are complete.

    Each stage's start and end go to the run's progress file (:mod:`core.progress`), and a
    failure with its reason; ``progress`` is a tracker whose plan spans several calls (the
    demo's), else one is made for these stages.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    settings = settings or get_settings()
    chosen = [name for name, _ in PIPELINE if name in stages]
    if progress is None:
        progress = ProgressTracker(
            settings.data_dir, config.run_id, [Step(stage=n) for n in chosen]
        )
    for name in chosen:  # before Run: a changed config clears markers there
        progress.estimate(name, _estimate(config, settings, name, force))
    try:
        run = _run_stages(config, settings, chosen, force, log, progress)
    except KeyboardInterrupt:
        progress.fail("stopped (Ctrl-C or SIGTERM) during this step", stopped=True)
        raise
    except Exception as err:
        progress.fail(f"{type(err).__name__}: {err}")
        raise
    return run


def _run_stages(
    config: RunConfig,
    settings: Settings,
    chosen: list[str],
    force: bool,
    log: Callable[[str], None],
    progress: ProgressTracker,
) -> Run:
    run = Run(config, settings, log)
    for i, (name, stage) in enumerate(PIPELINE):
        if name not in chosen:
            continue
        always = force or name == "publish"
        why = None if always else run.unfinished(name)
        if not always and why is None:
            log(f"[{config.run_id}] {name}: done already (use --force to recompute)")
            progress.end(name, 0.0, skipped=True)
            continue
        stale = f" (recomputing: {why})" if why is not None and run.done(name) else ""
        log(f"[{config.run_id}] {name} ...{stale}")
        for later, _ in PIPELINE[i:]:  # itself and what depends on it, before anything is written
            run.clear_done(later)
        progress.begin(name)
        start = time.perf_counter()
        stage(run)
        seconds = time.perf_counter() - start
        run.mark_done(name, seconds)
        progress.end(name, seconds)
        log(f"[{config.run_id}] {name}: {seconds:.1f}s")
    return run
