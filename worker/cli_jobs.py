"""``recsae worker``: do the explorer's queued jobs ("Explain with the LLM"; docs/jobs.md).

A worker claims the oldest queued job, explains, verifies and nulls it with the configured LLM
within the job's budget (``core.jobs``), saves it and claims the next; it writes its stage and a
heartbeat into the job's row as it goes. Jobs whose worker died (no heartbeat for
``RECSAE_JOB_STALE_S``) are queued again by the next worker that looks. SIGTERM or Ctrl-C gives
the job being done back to the queue at once. ``recsae serve`` starts one beside the server
(:data:`WORKER_COMMAND`); run more for more explanations at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

# `recsae worker`, as `recsae serve` starts it beside the server (worker/cli.py, _serve)
WORKER_COMMAND = [sys.executable, "-m", "worker.cli", "worker"]


def worker(
    name: Annotated[
        str | None, typer.Option(help="This worker's name in the jobs table (default host:pid).")
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop when no job is queued (for scripts).")
    ] = False,
) -> None:
    """Do the explorer's queued LLM explanation jobs until stopped (SIGTERM, Ctrl-C).

    Knobs (environment, docs/jobs.md):
    RECSAE_JOB_BUDGET_MIN (20): one job's minutes for explain, verify and null.
    RECSAE_JOB_HEARTBEAT_S (2): how often the job's row gets a heartbeat.
    RECSAE_JOB_STALE_S (30): a running job without a heartbeat this long is queued again.
    RECSAE_JOB_MAX_ATTEMPTS (3): claims before such a job fails.
    RECSAE_JOB_POLL_S (1): how often an idle worker looks for a job.
    RECSAE_LLM_*: the LLM it asks.
    """
    from core.jobs import Worker
    from core.settings import get_settings
    from core.store import migrate
    from core.store.engine import session_factory

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    settings = get_settings()
    url = settings.resolved_database_url
    migrate.upgrade(url)
    try:
        work = Worker(settings, session_factory(url), name)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    stop = threading.Event()

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        raise KeyboardInterrupt  # out of the job being done, which goes back to the queue

    signal.signal(signal.SIGTERM, interrupt)
    typer.echo(f"worker {work.name}: waiting for jobs", err=True)
    try:
        done = work.run(stop, until_idle=until_idle)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let it give its job back
        work.release()
        typer.echo(f"worker {work.name}: stopped", err=True)
        return
    typer.echo(f"worker {work.name}: {done} job(s) done", err=True)
