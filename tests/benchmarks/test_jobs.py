"""benchmarks/jobs.py counts from the database what happened to jobs whose worker was killed
mid-job: every queued job done once (none lost, none saved twice), and each kill that hit a job
cost exactly one more claim (the oracle: jobs + kills)."""

from __future__ import annotations

from benchmarks import jobs


def test_jobs_survive_killed_workers_and_are_counted() -> None:
    figures = jobs.measure(jobs=2, kills=2, delay_s=0.15, timeout_s=90)
    assert figures["kills"] == 2, figures  # both kills hit a job mid-way
    assert (figures["completed"], figures["lost"], figures["duplicates"]) == (2, 0, 0), figures
    assert figures["attempts"] == 2 + 2, figures
    assert figures["states"] == {"done": 2}
