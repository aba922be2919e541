"""Atomic file writes: a file is either its old content whole or its new content whole, never a
mix, even when the writing process is killed (docs/architecture.md, stage markers).

Every writer fills a temporary file beside the target (same directory, so the rename cannot
cross file systems), which is flushed to disk (fsync) and renamed over the target
(``os.replace``); the directory is then synced so the rename itself survives a crash. A memory
map of the old file stays valid: the old inode is never truncated. A killed writer leaves only
its temporary file (``.<name>.<pid>-<random>.partial``), which :func:`remove_partials` clears.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

PARTIAL_SUFFIX = ".partial"


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename or an unlink in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for a writer to create and fill; when the block
    ends without an error it is synced and renamed over ``path``, and on an error it is removed.
    ``path``'s directory must exist."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` as the whole content of ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) as the whole content of ``path``, atomically."""
    write_bytes(path, text.encode())


def save_npz(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> None:
    """Named arrays as one ``.npz`` file, atomically (``np.savez``, or its compressed form)."""
    save: Callable[..., None] = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        save(f, **arrays)


def unlink(path: Path) -> None:
    """Remove ``path`` if it is there, durably (its directory synced)."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def remove_partials(path: Path) -> list[Path]:
    """Delete the temporary files a killed writer of ``path`` left beside it; returns them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    left = sorted(path.parent.glob(f".{path.name}.*partial"))
    for partial in left:
        partial.unlink(missing_ok=True)
    return left
