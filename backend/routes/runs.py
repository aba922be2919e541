"""Runs: the index of published runs and each run's report (built by :mod:`backend.report`)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import Context, RunDep, SessionDep, SettingsDep, page
from backend.errors import responses
from backend.report import headline, load_metrics, report_context, run_summary
from backend.report.human import human_table
from core import study_reads
from core.progress import read_progress, view
from core.store import reads

router = APIRouter(tags=["runs"])


@page(router, "/", "runs.html", name="runs", responses=responses())
def runs_index(session: SessionDep, settings: SettingsDep) -> Context:
    """Published runs with their headline metrics, and the pipelines still running (their stage,
    k of n, elapsed, what is left, or why they failed: docs/architecture.md, progress)."""
    runs = reads.list_runs(session)
    published = {r.id: r.version for r in runs}
    progress = [
        {**view(p), "published_version": published.get(p.run_id)}
        for p in read_progress(settings.data_dir)
        if p.state != "done"
    ]
    return {
        "runs": [{**run_summary(r), "version": r.version, "headline": headline(r)} for r in runs],
        "progress": progress,
    }


@page(router, "/runs/{run_id}", "run.html", name="run", responses=responses(404, 503))
def run_report(run: RunDep, session: SessionDep) -> Context:
    """A run's report: the paper's tables and figures on this run, beside the paper's own."""
    ctx = report_context(run, load_metrics(run), reads.confidence_values(session, run.id))
    # The paper's human-evaluation table from the run's closed studies (paper §5.4).
    ctx["report"]["human"] = human_table(study_reads.human_evaluation_table(session, run.id))
    return ctx
