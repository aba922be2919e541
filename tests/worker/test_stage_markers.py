"""Stage markers and atomic writes on hand-made run directories (docs/architecture.md, stage
markers): a stage is done only when its marker was written for this config and every file it
wrote is still what it wrote; a writer that fails or dies leaves the previous file whole."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from core import atomic, rundir
from core.settings import Settings
from worker.pipeline import STAGES, Run, RunConfig

DIGEST = "c" * 64  # a config digest


def _write_interpretation(run_dir: Path, arrays: bytes = b"arrays", meta: bytes = b"{}") -> None:
    (run_dir / rundir.INTERPRETATION_ARRAYS).write_bytes(arrays)
    (run_dir / rundir.INTERPRETATION_JSON).write_bytes(meta)


def test_marker_records_each_files_sha256(tmp_path: Path) -> None:
    _write_interpretation(tmp_path)
    rundir.write_marker(tmp_path, "interpret", 2.5, DIGEST)
    marker = json.loads((tmp_path / ".done-interpret").read_text())
    assert marker == {
        "seconds": 2.5,
        "config": DIGEST,
        "files": {
            rundir.INTERPRETATION_ARRAYS: hashlib.sha256(b"arrays").hexdigest(),
            rundir.INTERPRETATION_JSON: hashlib.sha256(b"{}").hexdigest(),
        },
    }
    assert rundir.marker_problem(tmp_path, "interpret", DIGEST) is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: (d / ".done-interpret").unlink(), "not finished"),
        (lambda d: (d / ".done-interpret").write_text('{"seconds": 1.0}'), "no file digests"),
        (lambda d: (d / ".done-interpret").write_text("{trunc"), "unreadable"),
        (lambda d: (d / rundir.INTERPRETATION_JSON).write_bytes(b"{ }"), "changed since"),
        (lambda d: (d / rundir.INTERPRETATION_ARRAYS).unlink(), "is missing"),
        # the mixed state of a stage killed after its first file: one file newer than the other
        (lambda d: _write_interpretation(d, arrays=b"arrays v2"), "changed since"),
    ],
)
def test_a_marker_whose_files_changed_is_not_done(tmp_path: Path, change, problem: str) -> None:
    _write_interpretation(tmp_path)
    rundir.write_marker(tmp_path, "interpret", 1.0, DIGEST)
    change(tmp_path)
    found = rundir.marker_problem(tmp_path, "interpret", DIGEST)
    assert found is not None and problem in found


def test_another_config_or_an_unrecorded_optional_file_is_not_done(tmp_path: Path) -> None:
    (tmp_path / rundir.REPORT).write_text("{}")
    (tmp_path / rundir.OUTPUT_CHECK).write_text("{}")
    rundir.write_marker(tmp_path, "evaluate", 1.0, DIGEST)  # tuning off: no tuning.json
    assert rundir.marker_problem(tmp_path, "evaluate", DIGEST) is None
    assert "another config" in (rundir.marker_problem(tmp_path, "evaluate", "d" * 64) or "")
    (tmp_path / rundir.TUNING).write_text("{}")  # left by another run of the stage
    assert "tuning.json was not written" in (
        rundir.marker_problem(tmp_path, "evaluate", DIGEST) or ""
    )


def test_a_marker_written_before_its_files_is_not_done(tmp_path: Path) -> None:
    rundir.write_marker(tmp_path, "interpret", 1.0, DIGEST)  # nothing written yet
    _write_interpretation(tmp_path)
    found = rundir.marker_problem(tmp_path, "interpret", DIGEST)
    assert found is not None and "records no interpretation.safetensors" in found


def test_clearing_a_marker_removes_a_killed_writers_partial_files(tmp_path: Path) -> None:
    _write_interpretation(tmp_path)
    rundir.write_marker(tmp_path, "interpret", 1.0, DIGEST)
    left = tmp_path / f".{rundir.INTERPRETATION_ARRAYS}.123-abcd{atomic.PARTIAL_SUFFIX}"
    left.write_bytes(b"half")
    other = tmp_path / f".{rundir.RECORD}.123-abcd{atomic.PARTIAL_SUFFIX}"  # record's, kept
    other.write_bytes(b"half")
    rundir.clear_marker(tmp_path, "interpret")
    assert not (tmp_path / ".done-interpret").exists() and not left.exists() and other.exists()


def test_a_failing_writer_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    atomic.save_npz(path, {"x": np.arange(3)})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(path) as partial:
            partial.write_bytes(b"half a file")
            raise RuntimeError("disk full")
    with np.load(path) as arrays:
        assert arrays["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]  # no partial left
    rundir.write_json(path.with_suffix(".json"), {"a": np.float32(0.5)})
    assert json.loads(path.with_suffix(".json").read_text()) == {"a": 0.5}


def test_the_config_digest_changes_from_the_first_stage_reading_a_field(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    base = Run(RunConfig(recommender="bprmf"), settings, log=lambda _: None)
    before = {s: base.config_digest(s) for s in STAGES}
    changed = Run(RunConfig(recommender="bprmf", n_examples=7), settings, log=lambda _: None)
    differs = [s for s in STAGES if changed.config_digest(s) != before[s]]
    # n_examples is read first by interpret (worker/config.py FIRST_STAGE_USING)
    assert differs == ["interpret", "explain_llm", "evaluate", "sweep", "publish"]
