"""Run versions on disk: ``<runs_dir>/<run id>/versions/<n>/``, one per publish, never rewritten.

The worker computes in the run's working directory (:mod:`core.rundir` names its files). Publishing
copies the files the explorer reads into a new version directory (``n`` = the highest so far + 1),
records each file's sha256 in ``manifest.json``, makes the copy read-only and only then lets the
publish transaction point the database at it (``Run.artifact_dir``, ``Run.version``,
``Run.digests``). A version whose transaction failed stays on disk, unreferenced: it is listed as
unpublished. ``versions/published.json`` remembers which versions the database has pointed at.
``Run.artifact_dir`` is stored relative to the data directory (:func:`stored_dir`), so a copied or
moved data directory serves its own files (:func:`artifact_path`).
See docs/architecture.md, run versions.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.rundir import (
    CONFIG,
    MANIFEST,
    SAE_CFG,
    SAE_DIR,
    VERSION_FILES,
    VERSION_OPTIONAL,
    VERSIONS_DIR,
    ArtifactError,
    MissingArtifact,
    file_digest,
)

PUBLISHED = "published.json"  # in versions/: {"<n>": "<when the database first pointed at it>"}
_INCOMING = ".incoming-"  # a version being copied (renamed to its number when complete)
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


@dataclass(frozen=True)
class Version:
    """One version directory and what its manifest says."""

    number: int
    dir: Path
    created_at: str | None  # ISO time from the manifest (None: no readable manifest)
    digests: dict[str, str]  # relative path -> sha256
    size: int  # bytes of its files

    @property
    def n_files(self) -> int:
        return len(self.digests)


def stored_dir(directory: Path, data_dir: Path) -> str:
    """What ``Run.artifact_dir`` stores for ``directory``: its path relative to the data
    directory (``runs/<run id>/versions/<n>``), so the database and the files can be copied or
    moved together; the absolute path when ``directory`` is outside the data directory."""
    directory, base = Path(directory).resolve(), Path(data_dir).resolve()
    try:
        return directory.relative_to(base).as_posix()
    except ValueError:
        return str(directory)


def artifact_path(stored: str, data_dir: Path) -> Path:
    """The directory ``Run.artifact_dir`` names: a relative path is under ``data_dir`` (the data
    directory the reader serves, not the one the writer had); an absolute one, written before
    migration 0006 or outside the data directory, is taken as it is."""
    path = Path(stored)
    return path if path.is_absolute() else Path(data_dir) / path


def versions_dir(run_root: Path) -> Path:
    return Path(run_root) / VERSIONS_DIR


def _numbers(run_root: Path) -> list[int]:
    root = versions_dir(run_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def next_number(run_root: Path, published: int | None) -> int:
    """The next version's number: above every directory and the database's current version."""
    return max([*_numbers(run_root), published or 0]) + 1


def _files_to_copy(work_dir: Path) -> list[str]:
    missing = [name for name in VERSION_FILES if not (work_dir / name).is_file()]
    if missing:
        raise MissingArtifact(
            f"cannot publish from {work_dir}: {', '.join(missing)} missing (run the stages first)"
        )
    return [*VERSION_FILES, *(n for n in VERSION_OPTIONAL if (work_dir / n).is_file())]


def _read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.chmod(_READ_ONLY_DIR if path.is_dir() else _READ_ONLY_FILE)
    root.chmod(_READ_ONLY_DIR)


def _writable(root: Path) -> None:
    root.chmod(stat.S_IRWXU)
    for path in root.rglob("*"):
        path.chmod(stat.S_IRWXU if path.is_dir() else stat.S_IRUSR | stat.S_IWUSR)


def create_version(run_id: str, work_dir: Path, number: int) -> Version:
    """Copy the working directory's published files into ``versions/<number>/``, read-only,
    with ``manifest.json``; the directory appears complete or not at all (a rename)."""
    work_dir = Path(work_dir)
    names = _files_to_copy(work_dir)
    root = versions_dir(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_INCOMING}*"):  # left by a publish killed while copying
        _writable(stale)
        shutil.rmtree(stale)
    incoming = root / f"{_INCOMING}{number}"
    digests: dict[str, str] = {}
    size = 0
    for name in names:
        target = incoming / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work_dir / name, target)  # a copy: the worker may rewrite its own file
        with open(target, "rb") as f:
            os.fsync(f.fileno())
        digests[name] = file_digest(target)
        size += target.stat().st_size
    created = datetime.now(UTC).isoformat(timespec="seconds")
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "version": number,
        "created_at": created,
        "files": digests,
        "config": json.loads((incoming / CONFIG).read_text()),
        "sae_cfg": json.loads((incoming / SAE_DIR / SAE_CFG).read_text()),
    }
    (incoming / MANIFEST).write_text(json.dumps(manifest, indent=2))
    final = root / str(number)
    os.rename(incoming, final)  # fails if the number is taken: never overwrite a version
    _read_only(final)
    return Version(number, final, created, digests, size)


def read_version(run_root: Path, number: int) -> Version:
    """A version directory and its manifest (``ArtifactError`` if it is not a version)."""
    vdir = versions_dir(run_root) / str(number)
    if not vdir.is_dir():
        raise MissingArtifact(f"version {number} does not exist (versions: {_numbers(run_root)})")
    try:
        manifest = json.loads((vdir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        manifest = {}
    digests = dict(manifest.get("files") or {})
    size = sum(p.stat().st_size for p in vdir.rglob("*") if p.is_file() and p.name != MANIFEST)
    return Version(number, vdir, manifest.get("created_at"), digests, size)


def list_versions(run_root: Path) -> list[Version]:
    """Every version directory of a run, oldest first."""
    return [read_version(run_root, n) for n in _numbers(run_root)]


def published_numbers(run_root: Path) -> dict[int, str]:
    """The versions the database has pointed at (number -> when first), from ``published.json``."""
    path = versions_dir(run_root) / PUBLISHED
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def mark_published(run_root: Path, number: int) -> None:
    """Remember that the database pointed at version ``number`` (atomic replace of the list)."""
    seen = published_numbers(run_root)
    if number in seen:
        return
    seen[number] = datetime.now(UTC).isoformat(timespec="seconds")
    path = versions_dir(run_root) / PUBLISHED
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(k): v for k, v in sorted(seen.items())}, indent=2))
    os.replace(tmp, path)


def remove_version(run_root: Path, number: int, current: int | None) -> Version:
    """Delete version ``number``'s directory; the database's current version is refused."""
    if number == current:
        raise ArtifactError(
            f"version {number} is the current version of run {Path(run_root).name!r}: the "
            "explorer serves it; publish another version before removing it"
        )
    version = read_version(run_root, number)
    _writable(version.dir)
    shutil.rmtree(version.dir)
    return version
