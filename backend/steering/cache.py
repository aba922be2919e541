"""One engine per run, built on first use and shared by every thread (a process-wide cache)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from backend.steering.engine import SteeringEngine
from backend.steering.text import build_run_text
from core.store import reads
from core.store.schema import Run


@dataclass
class _CacheEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: SteeringEngine | None = None


_CACHE: dict[tuple[str, str, str], _CacheEntry] = {}
_CACHE_LOCK = threading.Lock()


def load_engine(session: Session, run: Run) -> SteeringEngine:
    """Build a run's engine: its rows (one read of items, users, latents) and its arrays."""
    rows = reads.steering_rows(session, run.id)
    text = build_run_text(run.id, rows, run.n_items, run.n_users, run.n_latents)
    return SteeringEngine.from_artifacts(run.id, Path(run.artifact_dir), text)


def engine_for_run(session: Session, run: Run) -> SteeringEngine:
    """The run's engine, built on first use and shared by every thread afterwards.

    Keyed by (run id, artifact dir, created_at) so a re-published run gets a fresh engine; the
    per-key lock makes concurrent first requests build it once.
    """
    key = (run.id, str(run.artifact_dir), str(run.created_at))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            for old in [k for k in _CACHE if k[0] == run.id]:
                del _CACHE[old]  # drop engines of earlier publications of this run
            entry = _CACHE[key] = _CacheEntry()
    with entry.lock:
        if entry.engine is None:
            entry.engine = load_engine(session, run)
        return entry.engine


def clear_cache() -> None:
    """Forget every loaded engine (tests; memory pressure)."""
    with _CACHE_LOCK:
        _CACHE.clear()
