"""Read-only memory maps of safetensors files as numpy arrays (no copy).

safetensors' own numpy loader copies every tensor into the process; a map instead reads pages
when they are used and shares them between every process that maps the same file (the
explorer's server processes: docs/architecture.md, run versions).
"""

from __future__ import annotations

import json
import mmap
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
