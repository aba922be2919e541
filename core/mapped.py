"""Read-only memory maps of safetensors files as numpy arrays (no copy), and the content check
of the published files mapped.

safetensors' own numpy loader copies every tensor into the process; a map instead reads pages
when they are used and shares them between every process that maps the same file (the
explorer's server processes: docs/architecture.md, run versions).

A map shows the file's bytes as they are now, so a published file is checked by its content:
hashed (sha256) when first used in a process and hashed again whenever its ``stat`` changes or
its last hash is older than :data:`RECHECK_S` (:func:`content_digest`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

# safetensors' dtype names -> numpy's (the ones numpy has)
_NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip


def map_safetensors(path: Path, where: str, error: type[Exception]) -> dict[str, np.ndarray]:
    """Every array of a safetensors file as read-only views of one memory map of it (pages are
    read when used, and shared by every process mapping the file). safetensors checks the file
    (``safe_open``: header, offsets, sizes); the layout is its documented one, a little-endian
    u64 header length, the JSON header, then the bytes."""
    try:
        with safe_open(str(path), framework="numpy"):
            pass
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (SafetensorError, OSError, ValueError) as err:
        raise error(f"{where} is not a readable safetensors file ({err})") from None
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _NUMPY_DTYPES.get(info["dtype"])
        if dtype is None:
            raise error(f"{where}: {name} has dtype {info['dtype']}, which numpy lacks")
        start, end = info["data_offsets"]
        count = (end - start) // np.dtype(dtype).itemsize
        flat: np.ndarray = np.empty(0, dtype)
        if count:
            flat = np.frombuffer(data, dtype, count, 8 + size + start)
        out[name] = flat.reshape(tuple(info["shape"]))
    return out


# --- content check (docs/architecture.md, run versions) ---------------------------------------

# A published file's content is hashed again when its last hash is older than this: a change that
# leaves the file's stat as it was (bytes rewritten below the file system, or a restored mtime on
# a file system without ctime) is refused by the first request made RECHECK_S seconds after it.
# One full sha256 per file per RECHECK_S per server process, only while requests come in.
RECHECK_S = 5.0


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, hex (what publishing records and loading checks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class _Hashed:
    state: tuple[int, int, int, int]  # the stat it was hashed under: inode, size, mtime, ctime
    digest: str
    at: float  # time.monotonic() when the hash began


_HASHED: dict[str, _Hashed] = {}  # path -> its last hash in this process
_HASH_LOCKS: dict[
    str, threading.Lock
] = {}  # path -> held while it is hashed (once, not per thread)
_HASHED_LOCK = threading.Lock()


def content_digest(path: Path, st: os.stat_result, max_age: float | None = None) -> str:
    """:func:`file_digest` of ``path`` whose ``stat`` is ``st``, hashed again when ``st`` differs
    from the last hash's (any write through the file system moves ctime, ``os.utime`` included)
    or that hash began more than ``max_age`` seconds ago (default :data:`RECHECK_S`; 0: now).
    Concurrent callers for one path wait for one hash instead of each reading the file."""
    key = str(path)
    state = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    limit = RECHECK_S if max_age is None else max_age
    with _HASHED_LOCK:
        lock = _HASH_LOCKS.setdefault(key, threading.Lock())
    with lock:
        known = _HASHED.get(key)
        now = time.monotonic()
        if known is None or known.state != state or now - known.at > limit:
            known = _HASHED[key] = _Hashed(state, file_digest(path), now)
        return known.digest
