"""Issue 12 item 4: a published version's steering arrays are memory-mapped, so the explorer's
server processes share one copy of their pages instead of holding a copy each; the digest is
still checked (once per state of the file, and again every RECHECK_S) and a changed file is
still refused (docs/architecture.md, run versions)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core import mapped, rundir
from core.rundir import ArtifactError, Published, load_vectors

N_USERS, D = 262_144, 64  # user_vectors: 64 MiB of float32
ARRAY_BYTES = N_USERS * D * 4

# Run in a child: load the version's vectors, touch every page, report the growth of the
# process's memory (kB, /proc/self/smaps_rollup), then hold the mapping until stdin closes.
CHILD = """
import json, sys
from pathlib import Path
from core.rundir import Published, load_vectors

def rollup():
    out = {}
    for line in open("/proc/self/smaps_rollup"):
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1])
    return out

before = rollup()
digests = json.loads(sys.argv[2])
vectors = load_vectors(Published("r", 1, Path(sys.argv[1]), digests))
total = float(vectors["user_vectors"].sum(dtype="float64"))  # every page read
after = rollup()
print(json.dumps({k: after[k] - before[k] for k in ("Rss", "Pss", "Anonymous")} | {"sum": total}))
sys.stdout.flush()
sys.stdin.read()
"""


@pytest.fixture
def version(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(0)
    arrays = {
        "item_embeddings": rng.standard_normal((100, D)).astype(np.float32),
        "user_vectors": rng.standard_normal((N_USERS, D)).astype(np.float32),
    }
    save_file(arrays, str(tmp_path / rundir.VECTORS))
    digests = {rundir.VECTORS: rundir.file_digest(tmp_path / rundir.VECTORS)}
    return tmp_path, digests


def _start(directory: Path, digests: dict[str, str]) -> tuple[subprocess.Popen[str], dict]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory), json.dumps(digests)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"the child failed (exit {child.wait()})"
    return child, json.loads(line)


def test_published_vectors_are_mapped_and_shared_between_processes(version) -> None:
    directory, digests = version
    first, grown_first = _start(directory, digests)
    try:
        second, grown_second = _start(directory, digests)
        try:
            size_kb = ARRAY_BYTES // 1024
            assert grown_first["sum"] == grown_second["sum"]
            for grown in (grown_first, grown_second):
                # read, not copied: no private anonymous memory the size of the array
                assert grown["Anonymous"] < size_kb / 4, grown
                assert grown["Rss"] >= size_kb * 0.9, grown  # yet every page is there
            # while both hold the map, the second pays about half of the pages (shared)
            assert grown_second["Pss"] < size_kb * 0.75, grown_second
        finally:
            assert second.stdin is not None
            second.stdin.close()
            second.wait(timeout=60)
    finally:
        assert first.stdin is not None
        first.stdin.close()
        first.wait(timeout=60)


def test_mapped_arrays_are_read_only_and_equal_to_the_file(version) -> None:
    directory, digests = version
    mapped = load_vectors(Published("r", 1, directory, digests))
    copied = load_vectors(directory)  # the worker's own loader: a private copy
    for name in rundir.VECTOR_TENSORS:
        np.testing.assert_array_equal(mapped[name], copied[name])
        assert not mapped[name].flags.writeable and copied[name].flags.writeable
        assert mapped[name].dtype == np.float32 and mapped[name].flags.c_contiguous


def test_digest_is_hashed_once_per_file_state_and_a_changed_file_is_still_refused(
    version, monkeypatch
) -> None:
    directory, digests = version
    hashed: list[Path] = []
    real = mapped.file_digest

    def counting(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(mapped, "file_digest", counting)
    published = Published("r", 1, directory, digests)
    load_vectors(published)
    load_vectors(published)
    assert len(hashed) == 1  # the second load maps without reading the whole file again

    path = directory / rundir.VECTORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last float: a valid, finite file with another digest
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime it had: only ctime moved
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    with pytest.raises(ArtifactError, match="does not match the digest recorded at publish"):
        load_vectors(published)
    assert len(hashed) == 2


def test_content_is_hashed_again_after_recheck_s_even_when_the_stat_is_the_same(
    tmp_path, monkeypatch
) -> None:
    """A change the stat does not show (bytes rewritten below the file system) is seen by the
    first check RECHECK_S after the last hash: :func:`content_digest` is given the stat the
    file had before the change, as if nothing had moved it."""
    monkeypatch.setattr(mapped, "RECHECK_S", 2.0)
    path = tmp_path / "file.bin"
    path.write_bytes(b"a" * 4096)
    st = path.stat()
    good = hashlib.sha256(b"a" * 4096).hexdigest()  # the reference: hashlib on the bytes
    assert mapped.content_digest(path, st) == good
    path.write_bytes(b"a" * 4095 + b"b")
    changed = hashlib.sha256(b"a" * 4095 + b"b").hexdigest()
    assert mapped.content_digest(path, st) == good  # within the bound: the last hash stands
    assert mapped.content_digest(path, st, max_age=0.0) == changed  # asked to hash now
    path.write_bytes(b"a" * 4096)
    assert mapped.content_digest(path, st) == changed
    time.sleep(2.1)  # past the bound: hashed again, the restored bytes are seen
    assert mapped.content_digest(path, st) == good
    path.write_bytes(b"a" * 4095 + b"b")
    time.sleep(2.1)
    assert mapped.content_digest(path, st) == changed


def test_a_published_file_that_is_not_safetensors_is_an_artifact_error(tmp_path) -> None:
    (tmp_path / rundir.VECTORS).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    digests = {rundir.VECTORS: rundir.file_digest(tmp_path / rundir.VECTORS)}
    with pytest.raises(ArtifactError, match="vectors.safetensors is not a readable safetensors"):
        load_vectors(Published("r", 1, tmp_path, digests))


def test_map_arrays_equals_load_arrays_and_survives_a_rewrite(tmp_path) -> None:
    """The worker maps interpret's arrays (publish reads a few of them): every dtype it writes
    comes back equal, and rewriting the file (a rerun) leaves an earlier map intact."""
    path = tmp_path / "arrays.safetensors"
    arrays = {
        "levels": np.arange(24, dtype=np.int64).reshape(4, 6),
        "edges": np.array([[np.nan, 1.5], [0.25, 2.0]]),
        "val": np.linspace(0, 1, 5, dtype=np.float32),
        "too_rare": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.int64),
    }
    rundir.save_arrays(path, arrays)
    mapped = rundir.map_arrays(path, ("levels", "edges"))
    loaded = rundir.load_arrays(path)
    assert set(mapped) == set(loaded) == set(arrays)
    for name, want in arrays.items():
        np.testing.assert_array_equal(mapped[name], loaded[name])
        assert mapped[name].dtype == want.dtype and mapped[name].shape == want.shape
    assert not mapped["levels"].flags.writeable
    rundir.save_arrays(path, {"levels": np.zeros((4, 6), np.int64)})  # renamed into place
    np.testing.assert_array_equal(mapped["levels"], arrays["levels"])
    with pytest.raises(ArtifactError, match="lacks arrays"):
        rundir.map_arrays(path, ("edges",))
