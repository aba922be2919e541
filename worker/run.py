"""A run: its directory and what its stages left there (its config: :mod:`worker.config`).

Stages (``worker.stages``) read earlier stages' results through the cached loaders here
(``run.dataset``, ``run.probe``, ...) and set the one they produce after writing it, so a later
stage in the same process does not read it back from disk. File names are :mod:`core.rundir`'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from core import atomic, rundir
from core.jsonsafe import jsonable
from core.llm.concepts import LLMConcept
from core.reports import PaperReport, RecommenderReport, Record, SAEReport, SweepRow
from core.settings import Settings, get_settings
from worker.artifacts import (
    ProbeArrays,
    RecordArrays,
    TuningPerLatent,
    load_llm_concepts,
    load_tuning,
)
from worker.config import DEMO_DATA, FIRST_STAGE_USING, STAGES, RunConfig
from worker.data.dataset import Dataset
from worker.interpret.result import Interpretation
from worker.sae.io import load_sae
from worker.sae.model import TopKSAE

R = TypeVar("R", bound=Record)


def config_digest(config: RunConfig, stage: str) -> str:
    """sha256 of the config fields ``stage`` and the stages before it read (its marker's)."""
    upto = STAGES.index(stage)
    read = {
        key: value
        for key, value in asdict(config).items()
        if STAGES.index(FIRST_STAGE_USING.get(key, "prepare")) <= upto
    }
    return hashlib.sha256(json.dumps(jsonable(read), sort_keys=True).encode()).hexdigest()


def stage_seconds(run_dir: Path, stage: str, digest: str) -> float | None:
    """The seconds ``stage`` took when its marker in ``run_dir`` was written for this config
    digest (an estimate of a rerun); None when there is no such marker. Reads only: unlike
    :class:`Run`, it neither writes config.json nor clears markers."""
    path = run_dir / rundir.done_marker(stage)
    try:
        marker = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(marker, dict) or marker.get("config") != digest:
        return None
    seconds = marker.get("seconds")
    return float(seconds) if isinstance(seconds, int | float) else None


class Run:
    """A run directory and the results of the stages run so far (loaded once, when first read)."""

    def __init__(
        self,
        config: RunConfig,
        settings: Settings | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.settings = settings or get_settings()
        self.dir = self.settings.runs_dir / config.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        # publish: drop kept concepts whose latents a new SAE no longer has (written to a JSON
        # file first) instead of refusing to publish (``recsae versions publish --discard-history``)
        self.discard_history = False
        self._write_config()

    def path(self, name: str) -> Path:
        """A file of the run directory (``name`` from :mod:`core.rundir`)."""
        return self.dir / name

    def _write_config(self) -> None:
        path = self.path(rundir.CONFIG)
        new = asdict(self.config)
        if path.exists():
            old = json.loads(path.read_text())
            changed = [key for key in new if old.get(key) != new[key]]
            if changed:
                # A changed field invalidates the first stage that reads it and all after it.
                first = min(STAGES.index(FIRST_STAGE_USING.get(key, "prepare")) for key in changed)
                self.log(
                    f"config of run {self.config.run_id} changed ({', '.join(changed)}): "
                    f"recomputing from {STAGES[first]}"
                )
                for name in STAGES[first:]:
                    self.clear_done(name)
        atomic.write_text(path, json.dumps(new, indent=2))

    # -- bookkeeping (docs/architecture.md, stage markers) --
    def done(self, stage: str) -> bool:
        """Whether ``stage``'s marker is there (:meth:`unfinished` also checks its files)."""
        return self.path(rundir.done_marker(stage)).exists()

    def config_digest(self, stage: str) -> str:
        """sha256 of the config fields ``stage`` and the stages before it read."""
        return config_digest(self.config, stage)

    def unfinished(self, stage: str) -> str | None:
        """Why ``stage`` must run (again), or None when it finished with this config and every
        file it wrote is still what it wrote (:func:`core.rundir.marker_problem`)."""
        return rundir.marker_problem(self.dir, stage, self.config_digest(stage))

    def outputs_present(self, stage: str) -> bool:
        """Whether every file ``stage`` always writes is there (a marker alone is not enough)."""
        return all(self.path(name).exists() for name in rundir.STAGE_OUTPUTS.get(stage, ()))

    def mark_done(self, stage: str, seconds: float) -> None:
        """After every file of ``stage`` is complete: its marker with those files' digests."""
        rundir.write_marker(self.dir, stage, seconds, self.config_digest(stage))

    def clear_done(self, stage: str) -> None:
        """Before ``stage`` writes anything, or when what it read changed."""
        rundir.clear_marker(self.dir, stage)

    def timings(self) -> dict[str, float]:
        """Seconds of each finished stage."""
        out = {}
        for name in STAGES:
            marker = self.path(rundir.done_marker(name))
            if marker.exists():
                out[name] = json.loads(marker.read_text())["seconds"]
        return out

    # -- JSON files and the typed reports --
    def write_json(self, name: str, obj: Any) -> None:
        rundir.write_json(self.path(name), obj)

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        if not path.exists():
            stage = rundir.stage_writing(name) or "the stage that writes it"
            c = self.config
            raise rundir.MissingArtifact(
                f"{path} is missing: run {stage} first (recsae run --recommender {c.recommender} "
                f"--name {c.dataset_name} --stage {stage}, with this run's other options)"
            )
        return json.loads(path.read_text())

    def write_report(self, name: str, report: Record) -> None:
        """A :mod:`core.reports` record as its JSON file."""
        self.write_json(name, report.to_json())

    def read_report(self, name: str, model: type[R]) -> R:
        """A report file validated into its :mod:`core.reports` model."""
        return model.model_validate(self.read_json(name))

    def recommender_report(self) -> RecommenderReport:
        return self.read_report(rundir.RECOMMENDER_REPORT, RecommenderReport)

    def sae_report(self) -> SAEReport:
        return self.read_report(rundir.SAE_REPORT, SAEReport)

    def paper_report(self) -> PaperReport:
        return self.read_report(rundir.REPORT, PaperReport)

    def sweep_rows(self) -> list[SweepRow] | None:
        """The sensitivity sweep's rows; None when the sweep did not run."""
        if not self.path(rundir.SWEEP).exists():
            return None
        return [SweepRow.model_validate(row) for row in self.read_json(rundir.SWEEP)]

    # -- what earlier stages left, loaded once (a stage sets what it writes) --
    @cached_property
    def dataset(self) -> Dataset:
        return Dataset.load(self.path(rundir.DATASET_DIR))

    @cached_property
    def probe(self) -> ProbeArrays:
        return ProbeArrays.load(self.dir)

    @cached_property
    def user_vectors(self) -> np.ndarray:
        """[U, d] each user's vector at the test position (what the explorer shows and steers)."""
        return rundir.load_vectors(self.dir)["user_vectors"]

    @cached_property
    def sae(self) -> TopKSAE:
        return load_sae(self.path(rundir.SAE_DIR))

    @cached_property
    def record(self) -> RecordArrays:
        return RecordArrays.load(self.dir)

    @cached_property
    def interpretation(self) -> Interpretation:
        return Interpretation.load(self.dir)

    @cached_property
    def llm_concepts(self) -> list[LLMConcept]:
        return load_llm_concepts(self.dir)

    @cached_property
    def tuning(self) -> TuningPerLatent:
        return load_tuning(self.dir)


__all__ = ["DEMO_DATA", "FIRST_STAGE_USING", "STAGES", "Run", "RunConfig"]
