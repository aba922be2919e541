"""Concurrent concept writes keep the latent's summary right on both engines.

The finding (issue 8): on PostgreSQL, 32 threads writing concepts for one latent kept every row,
but the latent's best confidence was wrong in 5 of 5 rounds (each writer compared against a
summary it had read before the others committed). ``writes.add_concept`` now locks the latent
row and derives the summary from the concepts table in the same transaction.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import Concept, Latent, Run
from core.store.writes import add_concept, publish_run, refresh_latent_summary

THREADS = 32
ROUNDS = 5


def _publish(sessions: sessionmaker[Session], run_id: str, n_latents: int = 1) -> None:
    run = dict(
        id=run_id, dataset="tiny", recommender="bprmf", artifact_dir="/nowhere",
        n_users=1, n_items=1, n_latents=n_latents, k=1, config={}, metrics={},
    )  # fmt: skip
    latents = [
        dict(idx=i, density=0.5, max_activation=1.0, mean_activation=0.5) for i in range(n_latents)
    ]
    publish_run(sessions, run, [], [], latents, [], [], [])


def _concept(run_id: str, latent: int, method: str, text: str, conf: float | None) -> dict:
    return dict(
        run_id=run_id, latent_idx=latent, method=method, text=text, terms=[], confidence=conf,
        status="verified" if conf is not None else "unparseable", model="m", details={},
    )  # fmt: skip


def _summary(sessions: sessionmaker[Session], run_id: str, latent: int) -> tuple[Any, ...]:
    with sessions() as s:
        lat = s.get(Latent, (run_id, latent))
        assert lat is not None
        return lat.tfidf_confidence, lat.tfidf_concept, lat.llm_confidence, lat.llm_concept


def _race(sessions: sessionmaker[Session], run_id: str) -> None:
    """ROUNDS rounds of THREADS writers released together on one latent; one writes 1.0."""
    rng = random.Random(8)
    for rnd in range(ROUNDS):
        latent = rnd  # a fresh latent per round: the first writer finds an empty summary
        confs = [round(rng.uniform(0.0, 0.99), 3) for _ in range(THREADS - 1)] + [1.0]
        rng.shuffle(confs)
        rows = [_concept(run_id, latent, "llm", f"concept {c:.3f}", c) for c in confs]
        barrier = threading.Barrier(THREADS)

        def write(row: dict, barrier: threading.Barrier = barrier) -> int:
            barrier.wait(timeout=30)
            return add_concept(sessions, row)

        with ThreadPoolExecutor(THREADS) as pool:
            ids = list(pool.map(write, rows))
        assert len(set(ids)) == THREADS
        with sessions() as s:
            kept = s.scalar(
                select(func.count())
                .select_from(Concept)
                .where(Concept.run_id == run_id, Concept.latent_idx == latent)
            )
        assert kept == THREADS, f"round {rnd}: {kept} of {THREADS} concepts kept"
        _, _, best, text = _summary(sessions, run_id, latent)
        assert (best, text) == (1.0, "concept 1.000"), f"round {rnd}: best {best} ({text!r})"


@pytest.fixture
def pg_sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    """This test's own PostgreSQL database (tests/conftest.py), migrated."""
    migrate.upgrade(postgres_url)
    yield session_factory(postgres_url)


@pytest.mark.postgres
def test_concurrent_concept_writes_keep_the_true_best_on_postgres(
    pg_sessions: sessionmaker[Session],
) -> None:
    _publish(pg_sessions, "pg-concurrency", n_latents=ROUNDS)
    _race(pg_sessions, "pg-concurrency")


def test_concurrent_concept_writes_keep_the_true_best_on_sqlite(
    fresh_sessions: sessionmaker[Session],
) -> None:
    _publish(fresh_sessions, "lite-concurrency", n_latents=ROUNDS)
    _race(fresh_sessions, "lite-concurrency")


def test_latent_summary_counts_only_the_current_versions_concepts(
    fresh_sessions: sessionmaker[Session],
) -> None:
    _publish(fresh_sessions, "versions")
    # Concepts of version 1 (history after a republish), then the run moves to version 2.
    add_concept(fresh_sessions, _concept("versions", 0, "llm", "old and sure", 1.0))
    add_concept(fresh_sessions, _concept("versions", 0, "tfidf", "oldterm", 0.9))
    with fresh_sessions.begin() as s:
        s.execute(update(Run).where(Run.id == "versions").values(version=2))
        refresh_latent_summary(s, "versions", 0)
    assert _summary(fresh_sessions, "versions", 0) == (None, None, None, None)

    # Written without a version: it describes the current one and counts.
    add_concept(fresh_sessions, _concept("versions", 0, "llm", "new", 0.6))
    # Written for version 1 (an explanation started before the republish): kept, not counted.
    add_concept(fresh_sessions, {**_concept("versions", 0, "llm", "late", 0.95), "run_version": 1})
    assert _summary(fresh_sessions, "versions", 0) == (None, None, 0.6, "new")
    with fresh_sessions() as s:
        versions = s.scalars(
            select(Concept.run_version).where(Concept.method == "llm").order_by(Concept.id)
        ).all()
    assert versions == [1, 2, 1]


def test_latent_summary_is_the_best_verified_else_the_newest_text(
    fresh_sessions: sessionmaker[Session],
) -> None:
    _publish(fresh_sessions, "summary")
    add_concept(fresh_sessions, _concept("summary", 0, "llm", "unparsed", None))
    # a label that names nothing stays in the history, never the latent's current concept
    assert _summary(fresh_sessions, "summary", 0) == (None, None, None, None)
    add_concept(
        fresh_sessions, {**_concept("summary", 0, "llm", "rare", None), "status": "too_rare"}
    )
    assert _summary(fresh_sessions, "summary", 0) == (None, None, None, "rare")
    add_concept(fresh_sessions, _concept("summary", 0, "llm", "good", 0.7))
    add_concept(fresh_sessions, _concept("summary", 0, "llm", "worse", 0.2))
    add_concept(fresh_sessions, _concept("summary", 0, "llm", "later, unparsed", None))
    add_concept(fresh_sessions, _concept("summary", 0, "tfidf", "term", 0.4))
    assert _summary(fresh_sessions, "summary", 0) == (0.4, "term", 0.7, "good")
    # A tie goes to the newer concept.
    add_concept(fresh_sessions, _concept("summary", 0, "llm", "as good, newer", 0.7))
    assert _summary(fresh_sessions, "summary", 0)[2:] == (0.7, "as good, newer")


def test_a_concept_for_an_unknown_latent_is_refused_by_name(
    fresh_sessions: sessionmaker[Session],
) -> None:
    _publish(fresh_sessions, "known")
    with pytest.raises(LookupError, match="run 'known' has no latent 7"):
        add_concept(fresh_sessions, _concept("known", 7, "llm", "x", 0.5))
    with fresh_sessions() as s:
        assert s.scalar(select(func.count()).select_from(Concept)) == 0


@pytest.mark.postgres
def test_a_concept_written_during_a_republish_waits_for_it_on_postgres(
    pg_sessions: sessionmaker[Session],
) -> None:
    """A republish deletes and re-inserts the latent rows under their locks; an explanation that
    waited on the old row must land on the new one, not be refused as "no such latent"
    (PostgreSQL skips a locked row that was deleted meanwhile)."""
    sessions = pg_sessions
    _publish(sessions, "pg-republish")
    with ThreadPoolExecutor(1) as pool:
        with sessions.begin() as s:  # the republish: lock, delete, insert again
            s.execute(select(Latent.idx).where(Latent.run_id == "pg-republish").with_for_update())
            s.execute(delete(Latent).where(Latent.run_id == "pg-republish"))
            s.add(Latent(run_id="pg-republish", idx=0, density=0.5, max_activation=1.0,
                         mean_activation=0.5))  # fmt: skip
            s.flush()
            waiting = pool.submit(
                add_concept, sessions, _concept("pg-republish", 0, "llm", "during", 0.75)
            )
            time.sleep(0.5)
            assert not waiting.done(), "the write did not wait for the republish's lock"
        waiting.result(timeout=30)
    assert _summary(sessions, "pg-republish", 0)[2:] == (0.75, "during")
