"""One engine per run, built on first use and shared by every thread (a process-wide cache).

An engine is keyed on the run's published version (its directory, number and publish time) and
on each file it was loaded from (inode, size, mtime in ns): a replaced or rewritten file is
noticed at the next request, a deleted one answers :class:`core.rundir.ArtifactError`, and a load
that failed is remembered for that exact state only, so restoring the good file is picked up and
a broken file is never served (docs/architecture.md, run versions).

The engine's artifact arrays (SAE weights, item embeddings, user vectors) are read-only views of
a memory map of the version's files (:func:`core.rundir.load_vectors`), so the server's worker
processes share their pages; each file's digest is checked once per state of the file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.steering.engine import SteeringEngine
from backend.steering.text import build_run_text
from core.rundir import ArtifactError, Published
from core.store import reads
from core.store.schema import Run


@dataclass
class _CacheEntry:
    key: tuple[Any, ...]
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: SteeringEngine | None = None
    error: ArtifactError | None = None  # the load failed for this key: answer it again


_CACHE: dict[str, _CacheEntry] = {}  # run id -> its engine for one state of its files
_CACHE_LOCK = threading.Lock()


def published(run: Run) -> Published:
    """The run's published version, as :mod:`core.rundir`'s checked loaders read it."""
    return Published(run.id, int(run.version or 1), Path(run.artifact_dir), run.digests)


def load_engine(session: Session, run: Run) -> SteeringEngine:
    """Build a run's engine: its rows (one read of items, users, latents) and its arrays, each
    file checked against the digest recorded at publish."""
    rows = reads.steering_rows(session, run.id)
    text = build_run_text(run.id, rows, run.n_items, run.n_users, run.n_latents)
    return SteeringEngine.from_artifacts(run.id, published(run), text)


def engine_for_run(session: Session, run: Run) -> SteeringEngine:
    """The run's engine, built on first use and shared by every thread afterwards.

    Raises :class:`ArtifactError` (naming the run, its version and the file) when a file is
    missing, changed since publishing, unreadable or not finite. The per-entry lock makes
    concurrent first requests build it once.
    """
    files = published(run)
    key = (str(files.dir), files.version, str(run.created_at), files.signature())
    with _CACHE_LOCK:
        entry = _CACHE.get(run.id)
        if entry is None or entry.key != key:  # first use, a new version, or a changed file
            entry = _CACHE[run.id] = _CacheEntry(key)
    with entry.lock:
        if entry.error is not None:
            raise entry.error
        if entry.engine is None:
            try:
                entry.engine = load_engine(session, run)
            except ArtifactError as err:
                entry.error = err
                raise
        return entry.engine


def clear_cache() -> None:
    """Forget every loaded engine (tests; memory pressure)."""
    with _CACHE_LOCK:
        _CACHE.clear()
