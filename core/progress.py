"""A pipeline's progress: one small JSON file per run, ``<data dir>/progress/<run id>.json``.

The worker writes it (atomically, :mod:`core.atomic`) as each stage starts and ends; the home
page reads it, so a run can be followed from the first minute, long before its first version is
published (docs/architecture.md, progress). The file holds the plan (each step: a stage, which
part of the work it serves, its estimate and, once finished, its seconds), the step running, when
things started, and a failure's reason; :func:`view` turns it into what a page shows (stage k of
n, elapsed, the steps left, the estimated time left where every step left has an estimate).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from core import atomic

PROGRESS_DIR = "progress"

State = Literal["queued", "running", "done", "failed", "stopped"]
ACTIVE: tuple[State, ...] = ("queued", "running")


class Step(BaseModel):
    """One step of the plan: a pipeline stage (a stage may come twice: the demo publishes a run
    once with its TF-IDF concepts and again with its LLM labels)."""

    stage: str
    part: str = ""  # what the step is for, as a reader says it ("TF-IDF concepts")
    estimate_s: float | None = None  # seconds it should take; None: not known
    seconds: float | None = None  # seconds it took, once finished
    skipped: bool = False  # finished already (reused), so it took no time

    @property
    def label(self) -> str:
        return f"{self.stage} ({self.part})" if self.part else self.stage


class Progress(BaseModel):
    """What a progress file holds."""

    run_id: str
    state: State = "queued"
    steps: list[Step]
    current: int = 0  # the step running (or failed); len(steps) once all are done
    started_at: float | None = None  # epoch seconds the first step started
    step_started_at: float | None = None
    updated_at: float
    error: str | None = None  # why it failed or stopped
    pid: int | None = None  # the writer, to tell a killed one from a running one
    host: str | None = None


def progress_dir(data_dir: Path) -> Path:
    return Path(data_dir) / PROGRESS_DIR


def progress_path(data_dir: Path, run_id: str) -> Path:
    """The progress file of ``run_id`` (a run id is a file name: no separators)."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise ValueError(f"run id {run_id!r} cannot name a progress file (no '/', no leading '.')")
    return progress_dir(data_dir) / f"{run_id}.json"


def write_progress(data_dir: Path, progress: Progress) -> None:
    path = progress_path(data_dir, progress.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, progress.model_dump_json(indent=1))


def _alive(progress: Progress) -> bool:
    """False when the writer ran on this machine and its process is gone (killed without a
    chance to say so); True otherwise (another machine's process cannot be checked)."""
    if progress.pid is None or progress.host != socket.gethostname():
        return True
    try:
        os.kill(progress.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_progress(data_dir: Path) -> list[Progress]:
    """Every run's progress, oldest start first. A file that cannot be read is reported as a
    failed entry naming the file (never dropped silently); a run whose writer on this machine
    died while running is reported as stopped."""
    folder = progress_dir(data_dir)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            progress = Progress.model_validate(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as err:
            reason = str(err).splitlines()[0]
            progress = Progress(
                run_id=path.stem, state="failed", steps=[], updated_at=time.time(),
                error=f"its progress file {path} is unreadable ({reason}); the next run of the "
                "pipeline rewrites it",
            )  # fmt: skip
        if progress.state in ACTIVE and not _alive(progress):
            progress.state = "stopped"
            progress.error = (
                f"the pipeline's process ({progress.pid}) is gone: it was killed at this step"
            )
        out.append(progress)
    return sorted(out, key=lambda p: (p.started_at is None, p.started_at or 0.0, p.run_id))


def view(progress: Progress, now: float | None = None) -> dict[str, Any]:
    """What a page shows of ``progress`` (plain JSON: the home page's twin repeats it)."""
    now = time.time() if now is None else now
    steps, k = progress.steps, progress.current
    n = len(steps)
    step = steps[k] if k < n else None
    running = progress.state == "running"
    left = steps[k + 1 :] if step is not None else []
    step_elapsed = (
        max(0.0, now - progress.step_started_at)
        if running and progress.step_started_at is not None
        else None
    )
    remaining_s: float | None = None
    if step is not None and progress.state in ACTIVE:
        estimates = [step.estimate_s, *(s.estimate_s for s in left)]
        if all(e is not None for e in estimates):
            first = max(0.0, (estimates[0] or 0.0) - (step_elapsed or 0.0))
            remaining_s = first + sum(e or 0.0 for e in estimates[1:])
    end = now if progress.state in ACTIVE else progress.updated_at
    return {
        "run_id": progress.run_id,
        "state": progress.state,
        "stage": step.stage if step is not None else None,
        "part": step.part if step is not None else None,
        "step": step.label if step is not None else None,
        "k": min(k + 1, n),  # 1-based: "stage k of n"
        "n": n,
        "done_steps": min(k, n),
        "elapsed_s": None if progress.started_at is None else max(0.0, end - progress.started_at),
        "step_elapsed_s": step_elapsed,
        "remaining": [s.label for s in left],
        "estimated_remaining_s": remaining_s,
        "error": progress.error,
        "updated_at": progress.updated_at,
    }


class ProgressTracker:
    """The writer's side: the plan, then ``begin`` / ``end`` per stage as the pipeline runs.

    ``begin(stage)`` moves to the next step of the plan for that stage (at or after the current
    one), so one tracker can follow several pipeline calls over one plan (the demo's).
    """

    def __init__(
        self,
        data_dir: Path,
        run_id: str,
        steps: Sequence[Step],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not steps:
            raise ValueError(f"the progress of run {run_id} needs at least one step")
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.progress = Progress(
            run_id=run_id, steps=[s.model_copy() for s in steps], updated_at=clock(),
            pid=os.getpid(), host=socket.gethostname(),
        )  # fmt: skip
        progress_path(self.data_dir, run_id)  # a bad run id fails here, before any stage

    def _write(self) -> None:
        self.progress.updated_at = self.clock()
        write_progress(self.data_dir, self.progress)

    def _find(self, stage: str) -> int:
        p = self.progress
        for i in range(p.current, len(p.steps)):
            if p.steps[i].stage == stage:
                return i
        planned = [s.label for s in p.steps[p.current :]]
        raise ValueError(
            f"stage {stage!r} is not in what is left of run {p.run_id}'s plan: {planned}"
        )

    def queued(self) -> None:
        self.progress.state = "queued"
        self._write()

    def estimate(self, stage: str, seconds: float | None) -> None:
        """The estimate of the next step for ``stage`` (no file write: ``begin`` writes)."""
        self.progress.steps[self._find(stage)].estimate_s = seconds

    def begin(self, stage: str) -> None:
        p = self.progress
        p.current = self._find(stage)
        now = self.clock()
        p.state, p.error, p.step_started_at = "running", None, now
        if p.started_at is None:
            p.started_at = now
        self._write()

    def end(self, stage: str, seconds: float, skipped: bool = False) -> None:
        p = self.progress
        i = self._find(stage)
        p.steps[i].seconds, p.steps[i].skipped = seconds, skipped
        p.current, p.step_started_at = i + 1, None
        if p.current == len(p.steps):
            p.state = "done"
        self._write()

    def fail(self, reason: str, stopped: bool = False) -> None:
        """The step running failed (or was stopped: Ctrl-C, SIGTERM) for ``reason``."""
        self.progress.state = "stopped" if stopped else "failed"
        self.progress.error = reason
        self._write()

    def done(self) -> None:
        """Every step finished (steps left in the plan were not needed)."""
        p = self.progress
        p.current, p.state, p.step_started_at = len(p.steps), "done", None
        self._write()
