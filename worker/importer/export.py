"""Reading and checking an import directory (docs/import.md): the manifest and every file it
names, refused before any stage runs and before anything is written; :func:`check_import`
returns what it read as a :class:`CheckedImport`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.rundir import SAE_CFG, SAE_WEIGHTS
from worker.data.dataset import Dataset
from worker.data.preprocess import PrepareConfig, preprocess
from worker.data.readers.imported import raw_from_frames
from worker.importer.data import (
    check_cases,
    check_interactions,
    no_duplicates,
    reps_at_test,
    rows_of,
)
from worker.importer.formats import (
    MANIFEST,
    ImportRefused,
    float_matrix,
    named_in,
    read_array,
    read_ids,
    read_table,
)
from worker.importer.model import TOP_N, check_metrics, check_ranking, ranking_check
from worker.importer.sae import check_sae

MANIFEST_KEYS = {
    "format", "description", "dataset", "score", "sequential", "items", "users",
    "interactions", "split", "item_metadata", "ranking", "metrics", "item_category", "item_name",
}  # fmt: skip
PREPARE = PrepareConfig(rating_threshold=None, k_core=0)  # the model's data, kept as it is


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


def read_manifest(directory: Path) -> dict[str, Any]:
    path, where = directory / MANIFEST, named_in(directory, MANIFEST)
    if not directory.is_dir():
        raise ImportRefused(f"{directory}: not a directory; give the import directory")
    if not path.is_file():
        raise ImportRefused(f"{directory}: {MANIFEST} is missing (docs/import.md has the format)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ImportRefused(f"{where}: not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ImportRefused(f"{where}: must hold a JSON object")
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        raise ImportRefused(f"{where}: unknown keys {unknown}; known: {sorted(MANIFEST_KEYS)}")
    for key in ("description", "items", "users", "interactions", "ranking"):
        if key not in manifest:
            raise ImportRefused(f"{where}: {key!r} is missing (docs/import.md, the manifest)")
    for key in ("items", "users"):
        if not isinstance(manifest[key], dict):
            raise ImportRefused(f"{where}: {key!r} must be an object")
    return manifest


def check_import(directory: str | Path, sae_dir: str | Path | None = None) -> CheckedImport:
    """Read and check everything the import directory names; raise :class:`ImportRefused` on the
    first problem. Nothing is written."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    where_manifest = named_in(directory, MANIFEST)

    # Items: embeddings, ids, bias (docs/import.md, the score).
    items = manifest["items"]
    emb_where = named_in(directory, str(items.get("embeddings")).split("#")[0])
    item_emb = float_matrix(read_array(directory, items.get("embeddings"), "items.embeddings"),
                             emb_where, "the item embeddings")  # fmt: skip
    item_ids = read_ids(directory, items.get("ids"), "items.ids", "item")["item"].tolist()
    ids_where = named_in(directory, str(items.get("ids")))
    if len(item_ids) != len(item_emb):
        raise ImportRefused(
            f"{ids_where}: {len(item_ids)} item ids for {len(item_emb)} embedding rows in "
            f"{emb_where}; give one id per row, in the same order"
        )
    no_duplicates(item_ids, ids_where, "item id")
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
        bias_where = named_in(directory, str(items["bias"]).split("#")[0])
        b = float_matrix(read_array(directory, items["bias"], "items.bias"), bias_where,
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
    inter_where = named_in(directory, str(manifest["interactions"]))
    interactions = check_interactions(interactions, inter_where, set(item_ids), split)
    meta = None
    if manifest.get("item_metadata"):
        meta = read_table(directory, manifest["item_metadata"], "item_metadata", ["item"])
        no_duplicates(meta["item"].tolist(), named_in(directory, manifest["item_metadata"]), "item")
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
    reps_where = named_in(directory, str(users.get("representations")).split("#")[0])
    case_reps = float_matrix(
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
    cases = read_ids(directory, users.get("ids"), "users.ids", "user")
    cases_where = named_in(directory, str(users.get("ids")))
    if len(cases) != len(case_reps):
        raise ImportRefused(
            f"{cases_where}: {len(cases)} rows for {len(case_reps)} representations in "
            f"{reps_where}; one (user[, position]) row per representation, in the same order"
        )
    sequential, positions = check_cases(cases, cases_where, dataset, manifest)

    # The source's own ranking, and the metrics it states, reproduced from these vectors.
    ranking = read_table(directory, manifest["ranking"], "ranking", ["user", "rank", "item"])
    ranking_where = named_in(directory, str(manifest["ranking"]))
    ranking = check_ranking(ranking, ranking_where, dataset)
    aligned_items = item_emb[rows_of(item_ids, dataset.item_ids)]
    test_reps = reps_at_test(dataset, cases["user"].tolist(), positions, case_reps)
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
    metrics_check = check_metrics(manifest, where_manifest, aligned_items, dataset,
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
