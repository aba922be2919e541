"""The progress file (docs/architecture.md, progress): what the worker writes as stages start and
end, and what the home page reads from it, on a hand-driven clock with hand-computed figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.progress import Progress, ProgressTracker, Step, progress_path, read_progress, view


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


PLAN = [
    Step(stage="prepare"),
    Step(stage="explain_llm"),
    Step(stage="publish", part="TF-IDF concepts"),
    Step(stage="explain_llm", part="LLM labels"),
    Step(stage="publish", part="LLM labels"),
]


def _on_disk(data_dir: Path, run_id: str = "r") -> dict:
    return json.loads(progress_path(data_dir, run_id).read_text())


def test_the_tracker_writes_each_step_and_the_view_counts_by_hand(tmp_path: Path) -> None:
    clock = Clock()
    t = ProgressTracker(tmp_path, "r", PLAN, clock=clock)
    t.queued()
    assert _on_disk(tmp_path)["state"] == "queued"
    assert view(Progress.model_validate(_on_disk(tmp_path)), now=1000.0)["k"] == 1
    for stage, seconds in (("prepare", 4.0), ("explain_llm", 10.0), ("publish", 6.0)):
        t.estimate(stage, seconds)
    t.begin("prepare")
    clock.t = 1003.0
    v = view(Progress.model_validate(_on_disk(tmp_path)), now=1003.0)
    # step 1 of 5 running 3 s of its 4: 1 s + 10 + 6 left; the LLM steps have no estimate yet
    assert (v["state"], v["stage"], v["k"], v["n"], v["elapsed_s"]) == (
        "running",
        "prepare",
        1,
        5,
        3.0,
    )
    assert v["estimated_remaining_s"] is None  # two steps left have no estimate
    assert v["remaining"] == [
        "explain_llm", "publish (TF-IDF concepts)", "explain_llm (LLM labels)",
        "publish (LLM labels)",
    ]  # fmt: skip
    t.end("prepare", 3.0)
    t.end("explain_llm", 0.0, skipped=True)  # reused: no begin
    clock.t = 1010.0
    t.begin("publish")
    v = view(Progress.model_validate(_on_disk(tmp_path)), now=1012.0)
    assert (v["k"], v["step"], v["done_steps"]) == (3, "publish (TF-IDF concepts)", 2)
    assert v["step_elapsed_s"] == pytest.approx(2.0) and v["elapsed_s"] == pytest.approx(12.0)
    assert v["estimated_remaining_s"] is None
    t.end("publish", 2.0)
    # the LLM pass: its estimates go to the steps after the ones done
    t.estimate("explain_llm", 100.0)
    t.estimate("publish", 7.0)
    clock.t = 1020.0
    t.begin("explain_llm")
    assert _on_disk(tmp_path)["current"] == 3  # the LLM pass's explain_llm, not the first one
    v = view(Progress.model_validate(_on_disk(tmp_path)), now=1050.0)
    # 30 s into a 100 s step: 70 s left of it, then 7 s of publish
    assert v["estimated_remaining_s"] == pytest.approx(70.0 + 7.0)
    assert v["remaining"] == ["publish (LLM labels)"]
    t.end("explain_llm", 90.0)
    t.begin("publish")
    t.end("publish", 5.0)
    on_disk = _on_disk(tmp_path)
    assert on_disk["state"] == "done" and on_disk["current"] == 5
    assert [s["seconds"] for s in on_disk["steps"]] == [3.0, 0.0, 2.0, 90.0, 5.0]
    assert [s["skipped"] for s in on_disk["steps"]] == [False, True, False, False, False]
    assert not [p for p in (tmp_path / "progress").iterdir() if p.suffix != ".json"]


def test_a_failure_names_its_step_and_reason(tmp_path: Path) -> None:
    t = ProgressTracker(tmp_path, "r", PLAN, clock=Clock())
    t.begin("prepare")
    t.end("prepare", 1.0)
    t.begin("explain_llm")
    t.fail("LLMError: the LLM at http://127.0.0.1:9/v1 did not answer")
    (p,) = read_progress(tmp_path)
    v = view(p, now=2000.0)
    assert (v["state"], v["step"], v["k"]) == ("failed", "explain_llm", 2)
    assert v["error"] == "LLMError: the LLM at http://127.0.0.1:9/v1 did not answer"
    assert v["estimated_remaining_s"] is None and v["step_elapsed_s"] is None
    assert v["elapsed_s"] == 0.0  # frozen at the failure, not growing with the clock


def test_a_stage_outside_the_plan_and_a_path_like_run_id_are_refused(tmp_path: Path) -> None:
    t = ProgressTracker(tmp_path, "r", PLAN[:1], clock=Clock())
    with pytest.raises(ValueError, match="'sweep' is not in"):
        t.begin("sweep")
    with pytest.raises(ValueError, match="no '/'"):
        ProgressTracker(tmp_path, "../escape", PLAN)


def test_an_unreadable_file_is_a_failed_entry_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "progress"
    folder.mkdir()
    (folder / "broken.json").write_text("{trunc")
    (p,) = read_progress(tmp_path)
    assert p.run_id == "broken" and p.state == "failed"
    assert p.error is not None and "broken.json is unreadable" in p.error


def test_a_running_entry_whose_process_is_gone_reads_as_stopped(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    t = ProgressTracker(tmp_path, "r", PLAN, clock=Clock())
    t.begin("prepare")
    (alive,) = read_progress(tmp_path)
    assert alive.state == "running"  # our own pid
    t.progress.pid = int(gone.stdout)
    t.begin("prepare")  # rewritten with the dead pid
    (p,) = read_progress(tmp_path)
    assert p.state == "stopped" and p.error is not None and "is gone" in p.error
