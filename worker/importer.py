"""Bring your own model (docs/import.md): read an import directory, refuse what does not fit
before any stage runs, and write the normalised copy the ``imported`` recommender loads.

An import directory holds ``manifest.json`` naming the files: the item embeddings [n_items, d]
(optional item bias [n_items]) with the items' ids; the user representations [n_cases, d] with,
per row, the user id and (sequential models) the history length it represents; the interactions
(user, item, timestamp[, split]) the model was trained on; optional item metadata; the source
model's own top 10 for up to 100 users; optionally the metrics it states. Every refusal is an
:class:`ImportRefused` naming the file, the row and what to fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from core import atomic
from core.rundir import SAE_CFG, SAE_WEIGHTS
from core.settings import Settings, get_settings
from worker.cases import DEV, TEST
from worker.config import RunConfig
from worker.data.dataset import Dataset
from worker.data.preprocess import PrepareConfig, preprocess
from worker.data.readers.common import DataFormatError
from worker.data.readers.imported import INTERACTIONS, ITEMS, META, SIDES, raw_from_frames
from worker.recommenders.imported import IDS, VECTORS

if TYPE_CHECKING:
    from worker.run import Run

MANIFEST = "manifest.json"
RANKING = "ranking.csv"  # the source model's top 10 (user, rank, item), normalised copy
RANKING_USERS = 100  # users whose top 10 is compared (docs/import.md)
TOP_N = 10
METRIC_TOLERANCE = 1e-3  # default |stated - reproduced| allowed for a stated metric
MANIFEST_KEYS = {
    "format", "description", "dataset", "score", "sequential", "items", "users",
    "interactions", "split", "item_metadata", "ranking", "metrics", "item_category", "item_name",
}  # fmt: skip
PREPARE = PrepareConfig(rating_threshold=None, k_core=0)  # the model's data, kept as it is


class ImportRefused(DataFormatError):
    """An import directory that cannot be imported as it is; the message says what to fix."""


@dataclass
class CheckedImport:
    """What :func:`check_import` read and verified; :func:`write_normalised` writes it."""

    directory: Path
    manifest: dict[str, Any]
    interactions: pd.DataFrame  # user, item, timestamp[, split]
    items_meta: pd.DataFrame | None
    split_column: bool
    dataset: Dataset
    item_ids: list[str]  # the source's item order
    item_emb: np.ndarray  # [I_src, d'] float32 (bias appended as the last column)
    case_users: list[str]
    case_positions: np.ndarray  # [C] history length each representation stands for
    case_reps: np.ndarray  # [C, d'] float32 (1 appended with a bias)
    sequential: bool
    bias: bool
    ranking: pd.DataFrame  # user, rank, item
    ranking_result: dict[str, Any]
    metrics_check: dict[str, Any] = field(default_factory=dict)
    sae: dict[str, np.ndarray] | None = None  # SAELens tensors, widened for a bias
    sae_cfg: dict[str, Any] | None = None
    digest: str = ""

    @property
    def d(self) -> int:
        return int(self.item_emb.shape[1])


# -- reading files -----------------------------------------------------------------------------


def _where(directory: Path, name: str) -> str:
    return f"{name} in {directory}"


def _file(directory: Path, name: object, what: str) -> Path:
    if not isinstance(name, str) or not name:
        raise ImportRefused(f"{MANIFEST} in {directory}: {what} needs a file name, got {name!r}")
    spec = name.split("#", 1)[0]
    path = (directory / spec).resolve()
    if directory.resolve() not in path.parents:
        raise ImportRefused(
            f"{MANIFEST} in {directory}: {what} names {name!r}, outside the import directory; "
            "copy the file into it and name it relative to it"
        )
    if not path.is_file():
        raise ImportRefused(f"{MANIFEST} in {directory}: {what} names {spec!r}, which is missing")
    return path


def read_array(directory: Path, name: object, what: str) -> np.ndarray:
    """A numeric array from ``.npy``, ``.safetensors`` (``file.safetensors#tensor`` or its only
    tensor) or ``.parquet`` (every column, as a matrix)."""
    path = _file(directory, name, what)
    assert isinstance(name, str)
    where = _where(directory, path.name)
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix == ".safetensors":
            tensors = load_file(str(path))
            key = name.split("#", 1)[1] if "#" in name else None
            if key is None and len(tensors) != 1:
                raise ImportRefused(
                    f"{where}: holds tensors {sorted(tensors)}; name one as "
                    f"{path.name}#NAME in {MANIFEST} ({what})"
                )
            if key is not None and key not in tensors:
                raise ImportRefused(f"{where}: no tensor {key!r}; it holds {sorted(tensors)}")
            array = tensors[key] if key is not None else next(iter(tensors.values()))
        elif path.suffix == ".parquet":
            array = _read_parquet(path).to_numpy()
        else:
            raise ImportRefused(
                f"{where}: {what} must be .npy, .safetensors or .parquet, not {path.suffix!r}"
            )
    except (ValueError, OSError, SafetensorError) as err:
        if isinstance(err, ImportRefused):
            raise
        raise ImportRefused(f"{where}: cannot read {what}: {err}") from err
    return np.asarray(array)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError as err:
        raise ImportRefused(
            f"{path.name} in {path.parent}: reading Parquet needs pyarrow (pip install pyarrow), "
            "or export the file as .csv / .npy"
        ) from err


def read_table(directory: Path, name: object, what: str, columns: list[str]) -> pd.DataFrame:
    """A table from ``.csv`` / ``.tsv`` (header row) or ``.parquet``; ``columns`` required."""
    path = _file(directory, name, what)
    where = _where(directory, path.name)
    if path.suffix == ".parquet":
        frame = _read_parquet(path).astype(str)
    elif path.suffix in (".csv", ".tsv"):
        try:
            frame = pd.read_csv(
                path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ImportRefused(f"{where}: cannot parse {what}: {err}") from err
    else:
        raise ImportRefused(f"{where}: {what} must be .csv, .tsv or .parquet, not {path.suffix!r}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ImportRefused(
            f"{where}: {what} needs columns {', '.join(columns)}; missing {', '.join(missing)} "
            f"(found {', '.join(map(str, frame.columns))})"
        )
    for column in columns:
        empty = frame[column].astype(str).str.strip() == ""
        if empty.any():
            row = int(np.argmax(empty.to_numpy())) + 1
            raise ImportRefused(f"{where}: data row {row}: column {column} is empty; fill it")
        frame[column] = frame[column].astype(str).str.strip()
    return frame


def _float_matrix(array: np.ndarray, where: str, what: str, ndim: int = 2) -> np.ndarray:
    """Check dtype, rank and finiteness; float32 out. Rows are 1-based data rows."""
    if array.ndim != ndim:
        shape = "[n_items]" if ndim == 1 else "[rows, d]"
        raise ImportRefused(
            f"{where}: {what} must be {ndim}-D {shape}, got shape {tuple(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ImportRefused(
            f"{where}: {what} has dtype {array.dtype}; export float32 or float64 values"
        )
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        row = int(bad[0])
        value = array[tuple(bad)]
        col = f", column {int(bad[1])}" if ndim == 2 else ""
        raise ImportRefused(
            f"{where}: {what} row {row}{col} is {value}; every value must be finite (NaN or inf "
            "usually means an item or user the model never trained: drop it or give it a vector)"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _ids(directory: Path, name: object, what: str, column: str) -> pd.DataFrame:
    """An id table (CSV/Parquet with ``column``) or a 1-D ``.npy`` of ids."""
    path = _file(directory, name, what)
    if path.suffix == ".npy":
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1:
            raise ImportRefused(f"{_where(directory, path.name)}: {what} must be 1-D")
        return pd.DataFrame({column: [str(v).strip() for v in values]})
    return read_table(directory, name, what, [column])


# -- the checks --------------------------------------------------------------------------------


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ImportRefused(f"{directory}: not a directory; give the import directory")
    if not path.is_file():
        raise ImportRefused(f"{directory}: {MANIFEST} is missing (docs/import.md has the format)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImportRefused(f"{_where(directory, MANIFEST)}: not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ImportRefused(f"{_where(directory, MANIFEST)}: must hold a JSON object")
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        raise ImportRefused(
            f"{_where(directory, MANIFEST)}: unknown keys {unknown}; known: {sorted(MANIFEST_KEYS)}"
        )
    for key in ("description", "items", "users", "interactions", "ranking"):
        if key not in manifest:
            raise ImportRefused(
                f"{_where(directory, MANIFEST)}: {key!r} is missing (docs/import.md, the manifest)"
            )
    for key in ("items", "users"):
        if not isinstance(manifest[key], dict):
            raise ImportRefused(f"{_where(directory, MANIFEST)}: {key!r} must be an object")
    return manifest


def check_import(directory: str | Path, sae_dir: str | Path | None = None) -> CheckedImport:
    """Read and check everything the import directory names; raise :class:`ImportRefused` on the
    first problem. Nothing is written."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    where_manifest = _where(directory, MANIFEST)

    # Items: embeddings, ids, bias (docs/import.md, the score).
    items = manifest["items"]
    emb_where = _where(directory, str(items.get("embeddings")).split("#")[0])
    item_emb = _float_matrix(read_array(directory, items.get("embeddings"), "items.embeddings"),
                             emb_where, "the item embeddings")  # fmt: skip
    item_ids = _ids(directory, items.get("ids"), "items.ids", "item")["item"].tolist()
    ids_where = _where(directory, str(items.get("ids")))
    if len(item_ids) != len(item_emb):
        raise ImportRefused(
            f"{ids_where}: {len(item_ids)} item ids for {len(item_emb)} embedding rows in "
            f"{emb_where}; give one id per row, in the same order"
        )
    _no_duplicates(item_ids, ids_where, "item id")
    score = manifest.get("score", "dot+bias" if "bias" in items else "dot")
    if score not in ("dot", "dot+bias"):
        raise ImportRefused(f"{where_manifest}: score must be 'dot' or 'dot+bias', got {score!r}")
    bias = score == "dot+bias"
    if bias != ("bias" in items):
        raise ImportRefused(
            f"{where_manifest}: score {score!r} "
            + ("needs items.bias" if bias else "has no item bias; remove items.bias or say "
               "score 'dot+bias'")
        )  # fmt: skip
    if bias:
        bias_where = _where(directory, str(items["bias"]).split("#")[0])
        b = _float_matrix(read_array(directory, items["bias"], "items.bias"), bias_where,
                          "the item bias", ndim=1)  # fmt: skip
        if len(b) != len(item_emb):
            raise ImportRefused(
                f"{bias_where}: {len(b)} biases for {len(item_emb)} items; one per item"
            )
        item_emb = np.concatenate([item_emb, b[:, None]], axis=1)

    # Interactions and the split (docs/method.md §1.1).
    split = manifest.get("split", "leave-one-out")
    if split not in ("leave-one-out", "column"):
        raise ImportRefused(
            f"{where_manifest}: split must be 'leave-one-out' or 'column' (the interactions' "
            f"split column: train / dev / test), got {split!r}"
        )
    columns = ["user", "item", "timestamp"] + (["split"] if split == "column" else [])
    interactions = read_table(directory, manifest["interactions"], "interactions", columns)
    inter_where = _where(directory, str(manifest["interactions"]))
    interactions = _check_interactions(interactions, inter_where, set(item_ids), split)
    meta = None
    if manifest.get("item_metadata"):
        meta = read_table(directory, manifest["item_metadata"], "item_metadata", ["item"])
        _no_duplicates(meta["item"].tolist(), _where(directory, manifest["item_metadata"]), "item")
    name = str(manifest.get("dataset") or directory.name)
    raw = raw_from_frames(name, interactions, meta, split == "column",
                          str(manifest.get("item_category", "items")),
                          str(manifest.get("item_name", "item")))  # fmt: skip
    try:
        dataset = preprocess(raw, PREPARE, log=None)
    except ValueError as err:
        raise ImportRefused(f"{inter_where}: {err}") from err

    # User representations (docs/import.md, cases).
    users = manifest["users"]
    reps_where = _where(directory, str(users.get("representations")).split("#")[0])
    case_reps = _float_matrix(
        read_array(directory, users.get("representations"), "users.representations"),
        reps_where, "the user representations",
    )  # fmt: skip
    d_reps = case_reps.shape[1]
    d_items = item_emb.shape[1] - int(bias)
    if d_reps != d_items:
        raise ImportRefused(
            f"{reps_where}: representations have d = {d_reps}, the item embeddings in "
            f"{emb_where} d = {d_items}; score(x, i) = x · e_i needs the same d"
        )
    if bias:
        case_reps = np.concatenate([case_reps, np.ones((len(case_reps), 1), np.float32)], axis=1)
    cases = _ids(directory, users.get("ids"), "users.ids", "user")
    cases_where = _where(directory, str(users.get("ids")))
    if len(cases) != len(case_reps):
        raise ImportRefused(
            f"{cases_where}: {len(cases)} rows for {len(case_reps)} representations in "
            f"{reps_where}; one (user[, position]) row per representation, in the same order"
        )
    sequential, positions = _check_cases(cases, cases_where, dataset, manifest)

    # The source's own ranking, and the metrics it states, reproduced from these vectors.
    ranking = read_table(directory, manifest["ranking"], "ranking", ["user", "rank", "item"])
    ranking_where = _where(directory, str(manifest["ranking"]))
    ranking = _check_ranking(ranking, ranking_where, dataset)
    aligned_items = item_emb[_rows(item_ids, dataset.item_ids)]
    test_reps = _test_reps(dataset, cases["user"].tolist(), positions, case_reps)
    result = ranking_check(aligned_items, test_reps, dataset, ranking)
    if result["reproduced"] < 1.0:
        first = result["first_mismatch"]
        raise ImportRefused(
            f"{ranking_where}: scoring the imported vectors reproduces the top {TOP_N} of only "
            f"{result['reproduced']:.0%} of {result['users']} users; user {first['user']}: "
            f"the file says {first['theirs']}, the vectors give {first['ours']}. Check the item "
            "id order of items.ids, the item bias (score 'dot+bias'), which history the vectors "
            "represent (the last position: train and dev items) and that the ranking excludes "
            "the items of that history"
        )
    metrics_check = _check_metrics(manifest, where_manifest, aligned_items, dataset,
                                   cases["user"].tolist(), positions, case_reps)  # fmt: skip
    checked = CheckedImport(
        directory=directory, manifest=manifest, interactions=interactions, items_meta=meta,
        split_column=split == "column", dataset=dataset, item_ids=item_ids, item_emb=item_emb,
        case_users=cases["user"].tolist(), case_positions=positions, case_reps=case_reps,
        sequential=sequential, bias=bias, ranking=ranking, ranking_result=result,
        metrics_check=metrics_check,
    )  # fmt: skip
    if sae_dir is not None:
        checked.sae_cfg, checked.sae = check_sae(Path(sae_dir), d_reps, bias)
    checked.digest = _digest(directory, manifest, sae_dir)
    return checked


def _no_duplicates(values: list[str], where: str, what: str) -> None:
    seen: dict[str, int] = {}
    for row, value in enumerate(values, start=1):
        if value in seen:
            raise ImportRefused(
                f"{where}: data row {row}: {what} {value!r} repeats row {seen[value]}; each "
                "must appear once"
            )
        seen[value] = row


def _check_interactions(
    frame: pd.DataFrame, where: str, known_items: set[str], split: str
) -> pd.DataFrame:
    unknown = ~frame["item"].isin(known_items)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: item {frame['item'].iloc[row - 1]!r} has no embedding "
            f"({int(unknown.sum())} rows like it); add its vector to items.embeddings/items.ids "
            "or drop its interactions"
        )
    stamps = pd.to_numeric(frame["timestamp"], errors="coerce")
    bad = stamps.isna() | (np.floor(stamps) != stamps)
    if bad.any():
        row = int(np.argmax(bad.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: timestamp {frame['timestamp'].iloc[row - 1]!r} is not a "
            "whole number; give Unix seconds (or any integer that orders each user's history)"
        )
    frame = frame.assign(timestamp=stamps.astype("int64"))
    if split == "column":
        sides = frame["split"].str.lower()
        wrong = ~sides.isin(SIDES)
        if wrong.any():
            row = int(np.argmax(wrong.to_numpy())) + 1
            raise ImportRefused(
                f"{where}: data row {row}: split {frame['split'].iloc[row - 1]!r}; use train, "
                "dev or test"
            )
        frame = frame.assign(split=sides)
        train = set(zip(frame["user"][sides == "train"], frame["item"][sides == "train"],
                        strict=True))  # fmt: skip
        for side in ("test", "dev"):
            rows = np.flatnonzero((sides == side).to_numpy())
            for r in rows:
                pair = (frame["user"].iloc[r], frame["item"].iloc[r])
                if pair in train:
                    raise ImportRefused(
                        f"{where}: data row {r + 1}: the {side} item {pair[1]!r} of user "
                        f"{pair[0]!r} is also one of their train rows: the split leaks {side} "
                        "items into training; drop the train row or retrain without it"
                    )
    counts = frame.groupby("user")["item"].nunique()
    short = counts[counts < 3]
    if len(short):
        user = short.index[0]
        row = int(np.argmax((frame["user"] == user).to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {user!r} has {int(short.iloc[0])} distinct items "
            f"({len(short)} users have fewer than 3); each user needs a train, a dev and a test "
            "item: drop those users (and their representations)"
        )
    return frame


def _check_cases(
    cases: pd.DataFrame, where: str, dataset: Dataset, manifest: dict[str, Any]
) -> tuple[bool, np.ndarray]:
    """(sequential, positions): one case per user (positions: n_u - 1) or every position."""
    user_index = {u: i for i, u in enumerate(dataset.user_ids)}
    unknown = ~cases["user"].isin(user_index)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {cases['user'].iloc[row - 1]!r} has no interactions; "
            "drop its representation or add its interactions"
        )
    lengths = np.array([len(s) for s in dataset.sequences], dtype=np.int64)
    idx = cases["user"].map(user_index).to_numpy(dtype=np.int64)
    once = pd.Series(idx).value_counts().max() == 1
    if "position" in cases.columns:
        pos = pd.to_numeric(cases["position"], errors="coerce")
        bad = pos.isna() | (np.floor(pos) != pos)
        if bad.any():
            row = int(np.argmax(bad.to_numpy())) + 1
            raise ImportRefused(f"{where}: data row {row}: position must be a whole number")
        positions = pos.to_numpy(dtype=np.int64)
    else:
        if not once:
            raise ImportRefused(
                f"{where}: users repeat but there is no position column; give each row its "
                "history length (position), or one row per user"
            )
        positions = lengths[idx] - 1
    out_of_range = (positions < 1) | (positions > lengths[idx] - 1)
    if out_of_range.any():
        row = int(np.argmax(out_of_range)) + 1
        u = idx[row - 1]
        raise ImportRefused(
            f"{where}: data row {row}: position {positions[row - 1]} for user "
            f"{dataset.user_ids[u]!r}, whose history has {lengths[u]} items; a position n is "
            f"the vector after the first n items, 1 .. {lengths[u] - 1}"
        )
    keys = pd.Series(idx * (int(lengths.max()) + 1) + positions)
    dup = keys.duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {cases['user'].iloc[row - 1]!r} at position "
            f"{positions[row - 1]} repeats an earlier row; one representation per (user, position)"
        )
    counts = np.bincount(idx, minlength=dataset.n_users)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ImportRefused(
            f"{where}: user {dataset.user_ids[missing[0]]!r} ({len(missing)} users) has no "
            "representation; every user of the interactions needs one"
        )
    sequential = bool(manifest.get("sequential", not once))
    if once:
        if "position" in cases.columns and (positions != lengths[idx] - 1).any():
            row = int(np.argmax(positions != lengths[idx] - 1)) + 1
            raise ImportRefused(
                f"{where}: data row {row}: one representation per user must be at the last "
                f"position (train + dev items, {lengths[idx[row - 1]] - 1} for this user), "
                f"got {positions[row - 1]}"
            )
        return False, positions
    if not sequential:
        raise ImportRefused(
            f"{MANIFEST}: sequential is false but {where} has several rows per user; give one "
            "per user, or say sequential: true"
        )
    incomplete = np.flatnonzero(counts != lengths - 1)
    if len(incomplete):
        u = incomplete[0]
        have = set(positions[idx == u].tolist())
        lack = sorted(set(range(1, lengths[u])) - have)[:5]
        raise ImportRefused(
            f"{where}: user {dataset.user_ids[u]!r} lacks positions {lack} (a sequential "
            f"import needs every position 1 .. n_u - 1; {len(incomplete)} users are incomplete); "
            "export them, or only each user's last position (then it imports as one vector per "
            "user)"
        )
    return True, positions


def _rows(ids: list[str], wanted: list[str]) -> np.ndarray:
    row_of = {v: r for r, v in enumerate(ids)}
    return np.array([row_of[v] for v in wanted], dtype=np.int64)


def _test_reps(
    dataset: Dataset, users: list[str], positions: np.ndarray, reps: np.ndarray
) -> np.ndarray:
    """[n_users, d'] each user's representation at the test position (n_u - 1)."""
    index = {u: i for i, u in enumerate(dataset.user_ids)}
    lengths = np.array([len(s) for s in dataset.sequences])
    out = np.zeros((dataset.n_users, reps.shape[1]), np.float32)
    for row, (user, n) in enumerate(zip(users, positions, strict=True)):
        u = index[user]
        if n == lengths[u] - 1:
            out[u] = reps[row]
    return out


def _check_ranking(frame: pd.DataFrame, where: str, dataset: Dataset) -> pd.DataFrame:
    users, items = set(dataset.user_ids), set(dataset.item_ids)
    for column, known in (("user", users), ("item", items)):
        bad = ~frame[column].isin(known)
        if bad.any():
            row = int(np.argmax(bad.to_numpy())) + 1
            raise ImportRefused(
                f"{where}: data row {row}: {column} {frame[column].iloc[row - 1]!r} is not in the "
                "interactions; rank only users and items the import has"
            )
    rank = pd.to_numeric(frame["rank"], errors="coerce")
    if rank.isna().any():
        row = int(np.argmax(rank.isna().to_numpy())) + 1
        raise ImportRefused(f"{where}: data row {row}: rank must be a number 1 .. {TOP_N}")
    frame = frame.assign(rank=rank.astype(int))
    sizes = frame.groupby("user", sort=False).size()
    if (sizes != TOP_N).any():
        user = sizes.index[(sizes != TOP_N).to_numpy()][0]
        raise ImportRefused(
            f"{where}: user {user!r} has {int(sizes[user])} rows; give the source model's top "
            f"{TOP_N} (ranks 1 .. {TOP_N}) for each user listed"
        )
    if len(sizes) < min(RANKING_USERS, dataset.n_users):
        raise ImportRefused(
            f"{where}: {len(sizes)} users ranked; give the top {TOP_N} of "
            f"{min(RANKING_USERS, dataset.n_users)} users (e.g. the first {RANKING_USERS})"
        )
    return frame


def ranking_check(
    item_emb: np.ndarray, test_reps: np.ndarray, dataset: Dataset, ranking: pd.DataFrame
) -> dict[str, Any]:
    """Our top 10 from the imported vectors against the source's, for the first 100 users of the
    ranking file: ``reproduced`` is the share whose top-10 set is the source's (an item swapped
    with one whose score ties the 10th within float32 rounding counts as the same), ``overlap``
    the mean share of shared items. History masked as the explorer does: train + dev items."""
    from worker.probe import top_items, user_vector_cases  # torch: imported when a check runs

    index = {u: i for i, u in enumerate(dataset.user_ids)}
    item_index = {it: i for i, it in enumerate(dataset.item_ids)}
    users = list(pd.unique(ranking["user"]))[:RANKING_USERS]
    rows = np.array([index[u] for u in users], dtype=np.int64)
    cases = user_vector_cases(dataset).subset(rows)
    ours = top_items(item_emb, test_reps[rows], dataset, cases, n=TOP_N)
    same, overlap, first = 0, [], None
    for k, user in enumerate(users):
        theirs = ranking[ranking["user"] == user].sort_values("rank")["item"].tolist()
        mine = [dataset.item_ids[i] for i in ours[k]]
        shared = len(set(theirs) & set(mine))
        overlap.append(shared / TOP_N)
        if shared == TOP_N or _tied_swap(item_emb, test_reps[rows[k]], theirs, mine, item_index):
            same += 1
        elif first is None:
            first = {"user": user, "theirs": theirs, "ours": mine}
    return {
        "reproduced": same / len(users),
        "overlap": float(np.mean(overlap)),
        "users": len(users),
        "first_mismatch": first,
    }


def _tied_swap(
    item_emb: np.ndarray, rep: np.ndarray, theirs: list[str], mine: list[str],
    item_index: dict[str, int],
) -> bool:  # fmt: skip
    """Whether every item in one list and not the other scores within float32 rounding of our
    10th score (a tie the two sides broke differently)."""
    scores = item_emb.astype(np.float64) @ rep.astype(np.float64)
    tenth = scores[item_index[mine[-1]]]
    tol = 1e-5 * max(1.0, float(np.abs(scores).max()))
    differing = set(theirs) ^ set(mine)
    return all(abs(scores[item_index[i]] - tenth) <= tol for i in differing)


def _check_metrics(
    manifest: dict[str, Any], where: str, item_emb: np.ndarray, dataset: Dataset,
    users: list[str], positions: np.ndarray, reps: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Each metric the manifest states (``metrics: {"test": {"ndcg@10": ...}, "tolerance"}``)
    recomputed by full ranking (docs/method.md §1.2) from these vectors."""
    from worker.metrics.ranking import hit_ndcg
    from worker.probe import leave_one_out_cases, rank_targets

    stated = manifest.get("metrics") or {}
    if not isinstance(stated, dict):
        raise ImportRefused(f"{where}: metrics must be an object like {{'test': {{'ndcg@10': x}}}}")
    tolerance = float(stated.get("tolerance", METRIC_TOLERANCE))
    index = {u: i for i, u in enumerate(dataset.user_ids)}
    lengths = np.array([len(s) for s in dataset.sequences])
    out: dict[str, Any] = {"tolerance": tolerance}
    for side_name, side, offset in (("test", TEST, 1), ("dev", DEV, 2)):
        claims = stated.get(side_name)
        if not claims:
            continue
        at = np.zeros((dataset.n_users, reps.shape[1]), np.float32)
        found = np.zeros(dataset.n_users, bool)
        for row, (user, n) in enumerate(zip(users, positions, strict=True)):
            u = index[user]
            # one vector per user stands for every position; a sequential one for its own
            if n == lengths[u] - offset or (n == lengths[u] - 1 and not found[u]):
                at[u], found[u] = reps[row], True
        ours = hit_ndcg(rank_targets(item_emb, at, dataset, leave_one_out_cases(dataset, side)))
        for metric, value in claims.items():
            if metric not in ours:
                raise ImportRefused(f"{where}: metrics.{side_name}: unknown metric {metric!r}; "
                                    f"known: {sorted(ours)}")  # fmt: skip
            got = ours[metric]
            out[f"{side_name}.{metric}"] = {"stated": float(value), "reproduced": got}
            if not math.isclose(float(value), got, abs_tol=tolerance):
                raise ImportRefused(
                    f"{where}: metrics.{side_name}.{metric} states {float(value):.4f}; the "
                    f"vectors give {got:.4f} by full ranking with each user's other items masked "
                    f"(docs/method.md §1.2), beyond the tolerance {tolerance}. Check the split, "
                    "the masking of the source's evaluation (sampled negatives give higher "
                    "numbers), or correct the stated value"
                )
    return out


def check_sae(sae_dir: Path, d: int, bias: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A TopK SAE in SAELens's layout (cfg.json + sae_weights.safetensors) fitting d; widened by
    one input (the constant 1 of a bias, passed through by b_dec) when the score has a bias."""
    cfg_path, weights_path = sae_dir / SAE_CFG, sae_dir / SAE_WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise ImportRefused(
                f"{path.name} in {sae_dir}: missing; --sae takes a SAELens directory "
                f"({SAE_CFG} + {SAE_WEIGHTS})"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: must hold a JSON object")
    arch = cfg.get("architecture", "topk")
    if arch != "topk":
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: architecture {arch!r}; only 'topk' SAEs")
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    for key, value in (("d_in", cfg.get("d_in")), ("d_sae", cfg.get("d_sae")), ("k", k)):
        if not isinstance(value, int) or value <= 0:
            raise ImportRefused(f"{SAE_CFG} in {sae_dir}: {key} must be a positive integer")
    assert isinstance(k, int)  # checked just above
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    if d_in != d:
        raise ImportRefused(
            f"{SAE_CFG} in {sae_dir}: d_in = {d_in}, the imported vectors have d = {d}; the SAE "
            "must be trained on these representations"
        )
    if not 0 < int(k) <= d_sae:
        raise ImportRefused(f"{SAE_CFG} in {sae_dir}: k = {k} must be in 1 .. d_sae = {d_sae}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ImportRefused(f"{SAE_WEIGHTS} in {sae_dir}: cannot read: {err}") from err
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise ImportRefused(f"{SAE_WEIGHTS} in {sae_dir}: tensor {name} is missing")
        where = f"{SAE_WEIGHTS} in {sae_dir}"
        array = tensors[name]
        if tuple(array.shape) != shape:
            raise ImportRefused(
                f"{where}: {name} has shape {tuple(array.shape)}, expected {shape} (SAELens "
                "layout: W_enc [d_in, d_sae], W_dec [d_sae, d_in])"
            )
        out[name] = _float_matrix(array, where, name, ndim=array.ndim)
    if bias:  # x' = [x, 1]: encoder ignores the 1 (x - b_dec = 0 there), decoder restores it
        out["W_enc"] = np.concatenate([out["W_enc"], np.zeros((1, d_sae), np.float32)])
        out["W_dec"] = np.concatenate([out["W_dec"], np.zeros((d_sae, 1), np.float32)], axis=1)
        out["b_dec"] = np.concatenate([out["b_dec"], np.ones(1, np.float32)])
    cfg_out = {
        "architecture": "topk", "d_in": d_in + int(bias), "d_sae": d_sae, "k": int(k),
        "activation_fn_kwargs": {"k": int(k)}, "apply_b_dec_to_input": True,
        "normalize_activations": "none", "dtype": "float32", "device": "cpu",
        "recsae_config": None, "imported_from": str(sae_dir), "widened_for_bias": bias,
    }  # fmt: skip
    return cfg_out, out


def _digest(directory: Path, manifest: dict[str, Any], sae_dir: str | Path | None) -> str:
    """sha256 over the manifest and every file it names (and the SAE's files)."""
    h = hashlib.sha256((directory / MANIFEST).read_bytes())
    names: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, str) and (directory / value.split("#")[0]).is_file():
            names.append(value.split("#")[0])

    collect({k: v for k, v in manifest.items() if k != "description"})
    paths = [directory / n for n in sorted(set(names))]
    if sae_dir is not None:
        paths += [Path(sae_dir) / SAE_CFG, Path(sae_dir) / SAE_WEIGHTS]
    for path in paths:
        h.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# -- the normalised copy -----------------------------------------------------------------------


def read_ranking(source: Path) -> pd.DataFrame:
    frame = pd.read_csv(source / RANKING, dtype={"user": str, "item": str})
    return frame.assign(rank=frame["rank"].astype(int))


def write_normalised(checked: CheckedImport, target: Path) -> Path:
    """Write the checked import into ``target`` (a fresh directory): what the ``imported`` reader
    and recommender read. Written into a temporary sibling and renamed, so a half-written
    directory is never taken for a complete one."""
    target = Path(target)
    if (target / META).is_file():
        return target  # the same digest: the same content, written before
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    checked.interactions.to_csv(partial / INTERACTIONS, index=False)
    if checked.items_meta is not None:
        checked.items_meta.to_csv(partial / ITEMS, index=False)
    save_file({"item_emb": checked.item_emb, "case_reps": checked.case_reps},
              str(partial / VECTORS))  # fmt: skip
    ids = {
        "items": checked.item_ids,
        "case_users": checked.case_users,
        "case_positions": checked.case_positions.tolist(),
    }
    (partial / IDS).write_text(json.dumps(ids))
    checked.ranking.to_csv(partial / RANKING, index=False)
    meta = {
        "manifest": checked.manifest,
        "source": str(checked.directory.resolve()),
        "digest": checked.digest,
        "dataset": str(checked.manifest.get("dataset") or checked.directory.name),
        "description": checked.manifest["description"],
        "score": "dot+bias" if checked.bias else "dot",
        "sequential": checked.sequential,
        "split_column": checked.split_column,
        "item_category": checked.manifest.get("item_category", "items"),
        "item_name": checked.manifest.get("item_name", "item"),
        "d": checked.d,
        "ranking_check": {k: v for k, v in checked.ranking_result.items() if k != "first_mismatch"},
        "metrics_check": checked.metrics_check,
        "sae": None,
    }
    if checked.sae is not None and checked.sae_cfg is not None:
        (partial / "sae").mkdir()
        (partial / "sae" / SAE_CFG).write_text(json.dumps(checked.sae_cfg, indent=2))
        save_file(checked.sae, str(partial / "sae" / SAE_WEIGHTS))
        meta["sae"] = {key: checked.sae_cfg[key] for key in ("d_in", "d_sae", "k", "imported_from")}
    atomic.write_text(partial / META, json.dumps(meta, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


# -- the run -----------------------------------------------------------------------------------

IMPORTED_NAMES = ("imported", "imported-sequential")


def existing_run_problem(run_id: str, settings: Settings) -> str | None:
    """Why importing as ``run_id`` would change another run (None: it may). A run of our own
    models under that id is never overwritten; an earlier import under it gets a new version."""
    config = settings.runs_dir / run_id / "config.json"
    if config.is_file():
        recommender = json.loads(config.read_text()).get("recommender")
        if recommender not in IMPORTED_NAMES:
            return (
                f"run {run_id!r} exists and holds {recommender!r}, not an imported model; "
                "choose another --name (importing never changes another run)"
            )
    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    from core.store import reads
    from core.store.engine import session_factory
    from core.store.migrate import upgrade

    upgrade(url)
    with session_factory(url)() as session:
        row = reads.get_run(session, run_id)
    if row is not None and row.recommender not in IMPORTED_NAMES:
        return (
            f"run {run_id!r} is published with {row.recommender!r}, not an imported model; "
            "choose another --name"
        )
    return None


def import_config(checked: CheckedImport, target: Path, run_id: str, **options: Any) -> RunConfig:
    """The run of an imported model: its data kept as it is, its vectors fixed."""
    return RunConfig(
        recommender=IMPORTED_NAMES[int(checked.sequential)],
        dataset_format="imported",
        dataset_path=str(target),
        dataset_name=str(checked.manifest.get("dataset") or run_id),
        run_id=run_id,
        rating_threshold=PREPARE.rating_threshold,
        k_core=PREPARE.k_core,
        recommender_overrides={
            "source": str(target),
            "n_cases": len(checked.case_reps),
            "emb_size": checked.d,
            "description": str(checked.manifest["description"]),
        },
        **options,
    )


def import_run(
    directory: str | Path,
    run_id: str,
    sae_dir: str | Path | None = None,
    settings: Settings | None = None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> Run:
    """Check ``directory`` (refusing before anything is written), copy it into the run
    directory and run every stage after the recommender's training on it, publish included."""
    from worker.pipeline import run_pipeline

    settings = settings or get_settings()
    problem = existing_run_problem(run_id, settings)
    if problem is not None:
        raise ImportRefused(problem)
    checked = check_import(directory, sae_dir)
    log(
        f"[{run_id}] import checked: {len(checked.dataset.item_ids):,} items, "
        f"{checked.dataset.n_users:,} users, {len(checked.case_reps):,} representations "
        f"(d = {checked.d}{', bias as the last dimension' if checked.bias else ''}); top 10 "
        f"reproduced for {checked.ranking_result['reproduced']:.0%} of "
        f"{checked.ranking_result['users']} users"
    )
    target = settings.runs_dir / run_id / "import" / checked.digest[:16]
    write_normalised(checked, target)
    return run_pipeline(import_config(checked, target, run_id, **options), settings, log=log)
