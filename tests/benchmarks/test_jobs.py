"""benchmarks/jobs.py counts from the database what happened to jobs whose worker was killed
mid-job: every queued job done once (none lost, none saved twice), and each kill that hit a job
cost exactly one more claim (the oracle: jobs + kills)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import jobs


def test_jobs_survive_killed_workers_and_are_counted() -> None:
    figures = jobs.measure(jobs=2, kills=2, delay_s=0.15, timeout_s=90)
    assert figures["kills"] == 2, figures  # both kills hit a job mid-way
    assert (figures["completed"], figures["lost"], figures["duplicates"]) == (2, 0, 0), figures
    assert figures["attempts"] == 2 + 2, figures
    assert figures["states"] == {"done": 2}


def test_benchmarks_llm_prints_the_jobs_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/llm.py`` carries them as ``jobs.completed`` / ``jobs.lost`` (measured: one
    job, its worker killed once mid-job)."""
    from benchmarks import llm
    from tests.benchmarks.test_llm import ARGS, answer
    from tests.worker.test_llm_client import ScriptedLLM

    def fake_server(**kw: Any) -> ScriptedLLM:
        server = ScriptedLLM(answer)
        server.model_path = kw["model_path"] + ".gguf"  # type: ignore[attr-defined]
        return server

    monkeypatch.setattr(llm, "demo_latents", lambda *args, **kw: None)
    monkeypatch.setattr(llm, "LocalLLM", fake_server)
    args = [*ARGS[: ARGS.index("--jobs")], "--concurrency", "1", "--jobs", "1", "--kills", "1"]
    figures = llm.main(args)
    assert figures["jobs"]["kills"] == 1, figures["jobs"]
    assert (figures["jobs"]["completed"], figures["jobs"]["lost"]) == (1, 0), figures["jobs"]
