"""One engine per run, built on first use and shared by every thread (a process-wide cache).

An engine is keyed on the run's published version (its directory, number and publish time) and
on each file it was loaded from (inode, size, mtime and ctime in ns), and every request checks
the files' content first (:meth:`core.rundir.Published.signature`: sha256 against the digests
recorded at publish, hashed again when a file's stat changes or every
:data:`core.mapped.RECHECK_S` seconds). A replaced, rewritten or corrupted file answers
:class:`core.rundir.ArtifactError` (503) instead of numbers, a deleted one too, and restoring the
good file is served again at the next request, without a restart (docs/architecture.md, run
versions). A load that failed is remembered for that exact state of the files, for at most
RECHECK_S seconds.

The engine's artifact arrays (SAE weights, item embeddings, user vectors) are read-only views of
a memory map of the version's files (:func:`core.rundir.load_vectors`), so the server's worker
processes share their pages. Numbers computed from them are checked once more where they become
a response (:func:`refuse_non_finite`): a NaN or an overflow never reaches a page or the API.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.steering.engine import SteeringEngine
from backend.steering.text import build_run_text
from core import mapped
from core.rundir import EXPLORER_FILES, ArtifactError, Published
from core.store import reads
from core.store.schema import Run
from core.versions import artifact_path


@dataclass
class _CacheEntry:
    key: tuple[Any, ...]
    files: Published
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: SteeringEngine | None = None
    error: ArtifactError | None = None  # the load failed for this key: answer it again...
    error_at: float = 0.0  # ...until RECHECK_S after it (time.monotonic())


DATA_DIR = "data_dir"  # the key of the served data directory in a session's ``info``
_CACHE: dict[str, _CacheEntry] = {}  # run id -> its engine for one state of its files
_CACHE_LOCK = threading.Lock()


def published(session: Session, run: Run) -> Published:
    """The run's published version, as :mod:`core.rundir`'s checked loaders read it.

    ``Run.artifact_dir`` is relative to the data directory the app serves, which its sessions
    carry (``session.info[DATA_DIR]``, set by :func:`backend.app.create_app`): a copied or moved
    data directory serves its own files. An absolute path (older rows) is taken as it is."""
    version = int(run.version or 1)
    data_dir = session.info.get(DATA_DIR)
    if data_dir is not None:
        directory = artifact_path(run.artifact_dir, Path(data_dir))
    elif Path(run.artifact_dir).is_absolute():
        directory = Path(run.artifact_dir)
    else:
        raise ArtifactError(
            f"run {run.id!r} v{version}: its files are under the data directory "
            f"({run.artifact_dir}), and this session was opened without one"
        )
    return Published(run.id, version, directory, run.digests)


def load_engine(session: Session, run: Run) -> SteeringEngine:
    """Build a run's engine: its rows (one read of items, users, latents) and its arrays, each
    file checked against the digest recorded at publish."""
    rows = reads.steering_rows(session, run.id)
    text = build_run_text(run.id, rows, run.n_items, run.n_users, run.n_latents)
    return SteeringEngine.from_artifacts(run.id, published(session, run), text)


def engine_for_run(session: Session, run: Run) -> SteeringEngine:
    """The run's engine, built on first use and shared by every thread afterwards.

    Raises :class:`ArtifactError` (naming the run, its version and the file) when a file is
    missing, changed since publishing, unreadable or not finite. The per-entry lock makes
    concurrent first requests build it once.
    """
    files = published(session, run)
    key = (str(files.dir), files.version, str(run.created_at), files.signature())
    with _CACHE_LOCK:
        entry = _CACHE.get(run.id)
        if entry is None or entry.key != key:  # first use, a new version, or a changed file
            entry = _CACHE[run.id] = _CacheEntry(key, files)
    with entry.lock:
        if entry.error is not None:
            if time.monotonic() - entry.error_at <= mapped.RECHECK_S:
                raise entry.error
            entry.error = None  # try again: the bytes may be back though the stat is the same
        if entry.engine is None:
            try:
                entry.engine = load_engine(session, run)
            except ArtifactError as err:
                entry.error, entry.error_at = err, time.monotonic()
                raise
            freeze_heap()
        return entry.engine


def _non_finite(value: Any, path: str) -> Iterator[str]:
    """Where (a JSON path) ``value`` holds a float that is NaN or infinite."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{path}[{i}]")


def refuse_non_finite(engine: SteeringEngine, body: Any, what: str) -> None:
    """Raise :class:`ArtifactError` (503) if ``body``, a response computed from ``engine``'s
    arrays (activations, steering scores, a score's parts), holds a NaN or an infinity.

    The run's files are hashed again first, so a file changed since its last check is named as
    such; files that still match their digests hold values that overflow float32, and the error
    names them. ``what`` says what the response is ("user 3's steering")."""
    where = next(_non_finite(body, ""), None)
    if where is None:
        return
    problem = f"{what} holds a number that is not finite (NaN or inf) at {where.lstrip('.')}"
    with _CACHE_LOCK:
        entry = _CACHE.get(engine.run_id)
    if entry is None or entry.engine is not engine:  # republished meanwhile: a new engine next
        raise ArtifactError(f"run {engine.run_id!r}: {problem}; reload the page")
    files = entry.files
    files.signature(max_age=0.0)  # raises, naming the file, for one changed since publishing
    arrays = " and ".join(n for n in EXPLORER_FILES if n.endswith(".safetensors"))
    checked = "match their digests" if files.digests is not None else "have no digests to check"
    raise ArtifactError(
        f"{files.label}: {problem}, computed from {arrays}, which {checked}: the published "
        "values overflow float32; republish the run"
    )


_FROZE_AT_START = False


def freeze_heap(starting: bool = False) -> None:
    """Move every object alive now (an engine's arrays and text, the app's modules) out of the
    cyclic garbage collector's sight (``gc.freeze``): a full collection otherwise walks them
    all, a pause of 30-400 ms measured right after a burst of page reads, on whichever request
    comes next (docs/scaling.md, "Admission"). Objects are still freed by reference counting;
    only cycles among them are never collected. ``starting``: collect first, once per process
    (a process that builds many apps, like the tests, pays it once)."""
    global _FROZE_AT_START
    if starting:
        if _FROZE_AT_START:
            return
        _FROZE_AT_START = True
        gc.collect()
    gc.freeze()


def finite_json(engine: SteeringEngine, body: Any, what: str) -> bytes:
    """``body`` as the bytes Starlette's ``JSONResponse`` sends, checked finite by the encoder
    itself (``allow_nan=False``): the hot steering path walks its answer once, not twice. A
    NaN or an infinity is then located and refused as :func:`refuse_non_finite` does."""
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        refuse_non_finite(engine, body, what)
        raise  # not a non-finite float after all: the encoder's own error
    return text.encode("utf-8")


def clear_cache() -> None:
    """Forget every loaded engine (tests; memory pressure)."""
    with _CACHE_LOCK:
        _CACHE.clear()
