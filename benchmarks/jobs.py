"""Durable explanation jobs under worker crashes (docs/jobs.md): none is lost.

Queues ``--jobs`` explanation jobs on a fresh SQLite database holding the test fixture's run
(tests/backend/factories.py), starts a real ``recsae worker`` process, and ``--kills`` times
SIGKILLs the worker while it is mid-job (its job's row says ``verify`` or ``null``) and starts
another; then waits until no job is queued or running. Every figure is counted from the
database afterwards: ``completed`` (jobs done), ``lost`` (jobs not done: failed, cancelled or
still waiting when ``--timeout`` ran out), ``duplicates`` (web concepts beyond one per done job),
``kills`` (kills that hit a job mid-way), ``attempts`` (claims in all) and ``seconds``. The LLM
is an OpenAI-compatible server on loopback whose answers take ``--delay`` seconds (the one the
tests use: the jobs' durability does not depend on the model; benchmarks/llm.py measures models).

    .venv/bin/python benchmarks/jobs.py [--jobs 3] [--kills 2] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the fixture run and the scripted LLM live in tests/
    sys.path.insert(0, str(REPO))

from core.settings import REPO_ROOT, Settings  # noqa: E402
from core.store import jobs as store  # noqa: E402
from core.store import migrate  # noqa: E402
from core.store.engine import session_factory  # noqa: E402
from core.store.schema import Concept  # noqa: E402
from tests.backend.accounts import create_account  # noqa: E402
from tests.backend.factories import publish_fixture  # noqa: E402
from tests.backend.test_explain_null import NO_LIMITS, label_aware  # noqa: E402
from tests.worker.test_llm_client import Reply, ScriptedLLM  # noqa: E402

MID_JOB = ("verify", "null")


def _worker(settings: Settings, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--name", name],
        cwd=REPO_ROOT,
        env={**os.environ, **settings.as_environment()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def measure(
    jobs: int = 3, kills: int = 2, delay_s: float = 0.2, timeout_s: float = 300.0
) -> dict[str, Any]:
    """The figures of the module doc (a fresh database and LLM of its own)."""

    def slow(payload: dict[str, Any]) -> Reply:
        reply = label_aware()(payload)
        reply.delay_s = delay_s
        return reply

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLM(slow) as llm:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=f"sqlite:///{Path(tmp) / 'jobs.db'}",
            llm_base_url=llm.base_url,
            llm_concurrency=2,
            job_heartbeat_s=0.3,
            job_stale_s=2.0,  # a killed worker's job is queued again 2 s after its last beat
            job_poll_s=0.2,
            **NO_LIMITS,
        )
        migrate.upgrade(settings.resolved_database_url)
        sessions = session_factory(settings.resolved_database_url)
        publish_fixture(sessions, n_latents=max(20, jobs))
        owner = create_account(sessions, "annotator", "benchmark").id
        for latent in range(jobs):
            store.enqueue(sessions, "fixture", latent, owner, 0)

        def active() -> list[store.Job]:
            with sessions() as session:
                return list(
                    session.scalars(select(store.Job).where(store.Job.state.in_(store.ACTIVE)))
                )

        deadline = time.monotonic() + timeout_s
        hit = 0
        name = f"worker-{hit}"
        worker = _worker(settings, name)
        try:
            while hit < kills and time.monotonic() < deadline:
                working = [j for j in active() if j.claimed_by == name and j.stage in MID_JOB]
                if working:
                    _kill(worker)  # mid-job: no goodbye, the heartbeat just stops
                    hit += 1
                    name = f"worker-{hit}"
                    worker = _worker(settings, name)
                elif not active():
                    break  # every job ended before all the kills: fewer kills measured
                time.sleep(0.05)
            while active() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            _kill(worker)
        with sessions() as session:
            states = dict(
                session.execute(
                    select(store.Job.state, func.count()).group_by(store.Job.state)
                ).all()
            )
            attempts = session.scalar(select(func.sum(store.Job.attempts))) or 0
            saved = session.scalar(
                select(func.count()).select_from(Concept).where(Concept.source == "web")
            )
    completed = int(states.get("done", 0))
    return {
        "queued": jobs,
        "completed": completed,
        "lost": jobs - completed,
        "duplicates": int(saved or 0) - completed,
        "kills": hit,
        "attempts": int(attempts),
        "states": {k: int(v) for k, v in states.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs queued")
    parser.add_argument("--kills", type=int, default=2, help="workers killed mid-job")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per LLM answer")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait, at most")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.kills < 0:
        parser.error("--jobs must be at least 1 and --kills at least 0")
    figures = measure(args.jobs, args.kills, args.delay, args.timeout)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
