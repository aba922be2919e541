"""The run directory: every file name a run writes, and the loaders that read them back.

A run is a directory ``<data_dir>/runs/<run id>/``. Arrays are safetensors (or npz), numbers and
concepts JSON, never a Python object dump. The worker writes these files stage by stage; the
database keeps the directory's path and the numbers (see :mod:`core.reports`), the backend reads
the arrays it steers with through the numpy loaders here (no torch).

Files, by the stage that writes them (docs/method.md §1 for what each holds):
- prepare: ``dataset/``
- train_recommender: ``recommender.safetensors`` + ``recommender.json``, ``recommender_report.json``
- probe: ``probe.npz`` (cases + representations), ``vectors.safetensors`` (what steering needs)
- train_sae: ``sae/cfg.json`` + ``sae/sae_weights.safetensors`` (SAELens), ``sae_report.json``
- record: ``record.npz`` (TopK codes and the model's top-10 of every case)
- interpret: ``interpretation.safetensors`` (levels, examples, statistics, decoder effects; the
  SAE's and the Base dimensions') + ``interpretation.json`` (TF-IDF concepts, histograms, sizes)
- explain_llm: ``llm_concepts.json`` (only when LLM concepts were asked for)
- evaluate: ``report.json`` (the paper's tables and figures), ``tuning.json`` (per-latent Table 8)
  and ``output_check.json`` (per-latent output check)
- sweep: ``sweep.json`` (only with ``--sweep``)
- the pipeline itself: ``config.json`` and one ``.done-<stage>`` marker per finished stage: the
  stage's config digest and the sha256 of every file it wrote (:func:`write_marker`); removed
  before the stage starts, written after its files are complete (docs/architecture.md, stage
  markers). Every file here is written atomically (:mod:`core.atomic`).

That directory is the worker's working directory. Publishing copies what the explorer reads into
a read-only version directory ``versions/<n>/`` (:mod:`core.versions`) and records each file's
sha256; the explorer reads a version through :class:`Published`, which refuses a file that is
missing, changed since publishing, unreadable or not finite (docs/architecture.md, run versions).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from core import atomic
from core.jsonsafe import jsonable
from core.mapped import content_digest, map_safetensors
from core.mapped import file_digest as file_digest  # re-exported: publishing records it

CONFIG = "config.json"
DATASET_DIR = "dataset"
DATASET_ARRAYS = "dataset.npz"  # inside DATASET_DIR: interaction sequences and splits
DATASET_META = "dataset.json"  # inside DATASET_DIR: ids, item metadata, preprocessing counts
RECOMMENDER_WEIGHTS = "recommender.safetensors"
RECOMMENDER_CONFIG = "recommender.json"
RECOMMENDER_REPORT = "recommender_report.json"
PROBE = "probe.npz"
VECTORS = "vectors.safetensors"
SAE_DIR = "sae"
SAE_CFG = "cfg.json"  # inside SAE_DIR (SAELens's name)
SAE_WEIGHTS = "sae_weights.safetensors"  # inside SAE_DIR (SAELens's name)
SAE_REPORT = "sae_report.json"
RECORD = "record.npz"
INTERPRETATION_ARRAYS = "interpretation.safetensors"
INTERPRETATION_JSON = "interpretation.json"
LLM_CONCEPTS = "llm_concepts.json"
REPORT = "report.json"
TUNING = "tuning.json"
OUTPUT_CHECK = "output_check.json"  # per-latent output check (docs/method.md §1.9)
SWEEP = "sweep.json"
DONE_PREFIX = ".done-"

# What each stage always leaves behind (relative to the run directory): a stage whose marker
# exists but whose files do not (an older layout, a deleted file) is not done.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "prepare": (f"{DATASET_DIR}/{DATASET_ARRAYS}", f"{DATASET_DIR}/{DATASET_META}"),
    "train_recommender": (RECOMMENDER_WEIGHTS, RECOMMENDER_CONFIG, RECOMMENDER_REPORT),
    "probe": (PROBE, VECTORS),
    "train_sae": (f"{SAE_DIR}/{SAE_CFG}", f"{SAE_DIR}/{SAE_WEIGHTS}", SAE_REPORT),
    "record": (RECORD,),
    "interpret": (INTERPRETATION_ARRAYS, INTERPRETATION_JSON),
    "evaluate": (REPORT, OUTPUT_CHECK),
}
# ... and what it writes only when the run asks for it (it removes the file otherwise).
STAGE_OPTIONAL: dict[str, tuple[str, ...]] = {
    "explain_llm": (LLM_CONCEPTS,),
    "evaluate": (TUNING,),
    "sweep": (SWEEP,),
}

SAE_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec")
VECTOR_TENSORS = ("item_embeddings", "user_vectors")

# Run versions (docs/architecture.md, run versions): ``versions/<n>/`` under the working directory.
VERSIONS_DIR = "versions"
MANIFEST = "manifest.json"  # inside a version: version, created_at, digests, the configs
SAE_FILES = (f"{SAE_DIR}/{SAE_CFG}", f"{SAE_DIR}/{SAE_WEIGHTS}")  # same digests: same latents
EXPLORER_FILES = (VECTORS, *SAE_FILES)  # what the explorer loads from a version
# What a version holds: the explorer's files, the run's config and its reports (provenance).
VERSION_FILES = (CONFIG, *EXPLORER_FILES, RECOMMENDER_REPORT, SAE_REPORT, REPORT)
VERSION_OPTIONAL = (LLM_CONCEPTS, TUNING, SWEEP, OUTPUT_CHECK)  # copied when the run wrote them


class ArtifactError(RuntimeError):
    """A run directory's file is missing or not what its writer wrote; says which and why."""


class MissingArtifact(ArtifactError, FileNotFoundError):
    """The file is not there at all (also a ``FileNotFoundError``, which callers may catch)."""


@dataclass(frozen=True)
class Published:
    """A published version of a run, as the explorer reads it: its directory and the sha256 of
    every file recorded at publish (``digests`` None: published before versions, nothing to
    check). Errors name the run, the version and the file relative to the version directory,
    never an absolute path (they reach web pages)."""

    run_id: str
    version: int
    dir: Path
    digests: Mapping[str, str] | None = None

    @property
    def label(self) -> str:
        return f"run {self.run_id!r} v{self.version}"

    def _stat(self, name: str) -> os.stat_result:
        try:
            st = (self.dir / name).stat()
        except OSError:
            raise MissingArtifact(f"{self.label}: {name} is missing; republish the run") from None
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{self.label}: {name} is not a file; republish the run")
        return st

    def _checked(self, name: str, max_age: float | None = None) -> tuple[Path, os.stat_result]:
        """(path, stat) of ``name`` after checking it is there and its content matches its
        recorded digest (:func:`core.mapped.content_digest`: hashed when first used in this
        process, again when its stat changes or its last hash is older than ``max_age``)."""
        st = self._stat(name)
        path = self.dir / name
        if self.digests is not None:
            recorded = self.digests.get(name)
            if recorded is None:
                raise ArtifactError(
                    f"{self.label}: {name} has no digest recorded at publish; republish the run"
                )
            try:
                actual = content_digest(path, st, max_age)
            except OSError as err:
                raise ArtifactError(
                    f"{self.label}: {name} cannot be read: {err.strerror}"
                ) from None
            if actual != recorded:
                raise ArtifactError(
                    f"{self.label}: {name} does not match the digest recorded at publish (the "
                    "file was changed after publishing); republish the run"
                )
        return path, st

    def signature(self, max_age: float | None = None) -> tuple[tuple[str, int, int, int, int], ...]:
        """(name, inode, size, mtime_ns, ctime_ns) of each file the explorer loads, each checked
        by its content first (``max_age``: see :meth:`_checked`; 0 hashes every file now). A
        cache keyed on it notices a replaced or rewritten file and is used only while the files
        hold what was published; raises :class:`ArtifactError` for a gone or changed file."""
        out = []
        for name in EXPLORER_FILES:
            _, st = self._checked(name, max_age)
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(out)

    def verified(self, name: str) -> Path:
        """The path of ``name`` after checking it is there and matches its recorded digest."""
        return self._checked(name)[0]


Source = Path | Published  # a directory the worker reads, or a published version


def _resolve(src: Source, name: str) -> tuple[Path, str]:
    """(path, how errors name it) of file ``name`` of a directory or a published version."""
    if isinstance(src, Published):
        return src.verified(name), f"{src.label}: {name}"
    path = Path(src) / name
    if not path.is_file():
        raise MissingArtifact(f"missing artifact {path}")
    return path, str(path)


def done_marker(stage: str) -> str:
    """The file that says ``stage`` finished (:func:`write_marker` says what it holds)."""
    return f"{DONE_PREFIX}{stage}"


def stage_files(stage: str) -> tuple[str, ...]:
    """Every file ``stage`` may write, relative to the run directory (always, then optional)."""
    return (*STAGE_OUTPUTS.get(stage, ()), *STAGE_OPTIONAL.get(stage, ()))


def stage_writing(name: str) -> str | None:
    """The stage that writes run-directory file ``name`` (None for files no stage writes)."""
    for stage in {**STAGE_OUTPUTS, **STAGE_OPTIONAL}:
        if name in stage_files(stage):
            return stage
    return None


def write_marker(run_dir: Path, stage: str, seconds: float, config_digest: str) -> None:
    """``stage`` finished: its marker, written (atomically) after every file of the stage is
    complete, holds the seconds it took, ``config_digest`` (the config it ran with) and the
    sha256 of each file of :func:`stage_files` it left (docs/architecture.md, stage markers)."""
    run_dir = Path(run_dir)
    files = {n: file_digest(run_dir / n) for n in stage_files(stage) if (run_dir / n).is_file()}
    marker = {"seconds": seconds, "config": config_digest, "files": files}
    atomic.write_text(run_dir / done_marker(stage), json.dumps(marker, indent=2))


def clear_marker(run_dir: Path, stage: str) -> None:
    """``stage`` is no longer done (before it starts writing, or when what it read changed); the
    temporary files a killed writer of the stage left go too."""
    atomic.unlink(Path(run_dir) / done_marker(stage))
    for name in stage_files(stage):
        atomic.remove_partials(Path(run_dir) / name)


def marker_problem(run_dir: Path, stage: str, config_digest: str) -> str | None:
    """Why ``stage`` does not count as done in ``run_dir``, or None when it does: its marker is
    there, was written for ``config_digest``, and every file the stage may write is what the
    marker recorded (same sha256; a file it did not write is not there)."""
    path = Path(run_dir) / done_marker(stage)
    if not path.is_file():
        return "not finished"
    try:
        marker = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"its marker {path.name} is unreadable"
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        return f"its marker {path.name} records no file digests (an older run directory)"
    if marker.get("config") != config_digest:
        return "its marker was written with another config"
    recorded: dict[str, Any] = marker["files"]
    for name in STAGE_OUTPUTS.get(stage, ()):
        if name not in recorded:
            return f"its marker records no {name}"
    for name in stage_files(stage):
        file = Path(run_dir) / name
        if name not in recorded:
            if file.exists():
                return f"{name} was not written by the stage's last finished run"
        elif not file.is_file():
            return f"{name} is missing"
        elif file_digest(file) != recorded[name]:
            return f"{name} changed since the stage finished"
    return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write named arrays as one safetensors file (any dtype safetensors has; made contiguous).

    Written beside it and renamed into place (:mod:`core.atomic`): a stage killed halfway leaves
    the previous file whole, and a memory map of the previous file stays valid, never truncated
    under it."""
    with atomic.atomic_path(Path(path)) as partial:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(partial))


def load_arrays(path: Path, names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of a safetensors file, dtypes as written; ``names`` must all be present."""
    if not Path(path).is_file():
        raise MissingArtifact(f"missing artifact {path}")
    arrays = load_file(str(path))
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks arrays {missing}; it has {sorted(arrays)}")
    return arrays


def write_json(path: Path, obj: Any) -> None:
    """``obj`` (numpy values allowed, NaN -> null) as indented JSON, written atomically."""
    atomic.write_text(Path(path), json.dumps(jsonable(obj), indent=2))


def read_json(path: Path) -> Any:
    """A JSON file of the run directory, or :class:`MissingArtifact` naming it."""
    if not Path(path).is_file():
        raise MissingArtifact(f"missing artifact {path}")
    return json.loads(Path(path).read_text())


_FINITE_CHUNK = 1 << 20  # values checked at a time (a bounded temporary, not one per value)


def _check_finite(where: str, arrays: dict[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        flat = a.reshape(-1)
        bad = sum(
            int(len(part) - np.count_nonzero(np.isfinite(part)))
            for part in (flat[i : i + _FINITE_CHUNK] for i in range(0, flat.size, _FINITE_CHUNK))
        )
        if bad:
            raise ArtifactError(f"{where}: {name} holds {bad} non-finite values (NaN or inf)")


def _finite_tensors(path: Path, where: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named float32 arrays of a safetensors file, each present and finite (copies)."""
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"{where} is not a readable safetensors file ({err})") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{where} lacks tensors {missing}; it has {sorted(arrays)}")
    out = {n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in names}
    _check_finite(where, out)
    return out


def map_arrays(path: Path, names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """:func:`load_arrays` as read-only memory-mapped views (:mod:`core.mapped`): what a stage
    does not use is never read (publish uses a few of interpret's arrays, not its [C, k] ones).
    Safe because :func:`save_arrays` replaces a file by renaming, never rewrites it in place."""
    if not Path(path).is_file():
        raise MissingArtifact(f"missing artifact {path}")
    arrays = map_safetensors(Path(path), str(path), ArtifactError)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks arrays {missing}; it has {sorted(arrays)}")
    return arrays


def _mapped_tensors(path: Path, where: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named float32 arrays of a published (read-only) safetensors file as views of one
    shared memory map (:func:`_map_file`): every server process reading the file shares its
    pages instead of holding a copy (docs/architecture.md, run versions). A tensor that is not
    float32 is copied as :func:`_finite_tensors` does."""
    arrays = map_safetensors(path, where, ArtifactError)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{where} lacks tensors {missing}; it has {sorted(arrays)}")
    if any(arrays[n].dtype != np.float32 for n in names):
        return _finite_tensors(path, where, names)
    out = {n: arrays[n] for n in names}
    _check_finite(where, out)
    return out


def load_tensors(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named float32 arrays of a safetensors file, each checked present and finite."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifact(f"missing artifact {path}")
    return _finite_tensors(path, str(path), names)


def _parse_sae_cfg(path: Path, where: str) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{where} is not readable JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{where} holds {type(cfg).__name__}, not a JSON object")
    missing = [key for key in ("d_in", "d_sae", "k") if key not in cfg]
    if missing:
        raise ArtifactError(f"{where} lacks {missing}: not a TopK SAE config")
    if cfg.get("architecture", "topk") != "topk":
        arch = cfg["architecture"]
        raise ArtifactError(f"{where} holds a {arch!r} SAE; only 'topk' is supported")
    return cfg


def read_sae_cfg(sae_dir: Path) -> dict[str, Any]:
    """The SAE's ``cfg.json`` (SAELens keys ``d_in``, ``d_sae``, ``k``, ``architecture``)."""
    path = Path(sae_dir) / SAE_CFG
    if not path.is_file():
        raise MissingArtifact(f"no SAE here: {path} is missing")
    return _parse_sae_cfg(path, str(path))


def _check_sae_shapes(cfg: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
    d, n = int(cfg["d_in"]), int(cfg["d_sae"])
    expected = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ArtifactError(
                f"{where}: {name} has shape {arrays[name].shape}, cfg.json says {shape}"
            )


def load_sae_dir(sae_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(cfg, {W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d]}) of the SAE saved in
    ``sae_dir`` (SAELens layout), each tensor's shape checked against ``cfg.json``."""
    sae_dir = Path(sae_dir)
    cfg = read_sae_cfg(sae_dir)
    arrays = load_tensors(sae_dir / SAE_WEIGHTS, SAE_TENSORS)
    _check_sae_shapes(cfg, arrays, str(sae_dir / SAE_WEIGHTS))
    return cfg, arrays


def load_sae_arrays(run_dir: Source) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A run's SAE as :func:`load_sae_dir` reads it; from a :class:`Published` version, each file
    is checked against its digest first and errors name the run and the file."""
    if not isinstance(run_dir, Published):
        return load_sae_dir(Path(run_dir) / SAE_DIR)
    cfg_path, cfg_where = _resolve(run_dir, SAE_FILES[0])
    cfg = _parse_sae_cfg(cfg_path, cfg_where)
    weights, where = _resolve(run_dir, SAE_FILES[1])
    arrays = _mapped_tensors(weights, where, SAE_TENSORS)
    _check_sae_shapes(cfg, arrays, where)
    return cfg, arrays


def load_vectors(run_dir: Source) -> dict[str, np.ndarray]:
    """{item_embeddings [I, d], user_vectors [U, d]}: what the probe left for steering. From a
    :class:`Published` version, read-only views of a memory map shared between processes."""
    path, where = _resolve(run_dir, VECTORS)
    if isinstance(run_dir, Published):
        return _mapped_tensors(path, where, VECTOR_TENSORS)
    return _finite_tensors(path, where, VECTOR_TENSORS)
