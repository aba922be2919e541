"""The interactions and item metadata of an imported model (docs/import.md), as the importer left
them in the run directory: ``interactions.csv`` (user, item, timestamp[, split]) and
``items.csv`` (an ``item`` column and any text columns).

The model was trained on exactly these interactions, so nothing is filtered (the run prepares
them with no rating threshold and no k-core); the split is either the interactions' own
``split`` column (train / dev / test) or our chronological leave-one-out (docs/method.md §1.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from worker.data.dataset import RawDataset
from worker.data.readers.common import DataFormatError, items_frame, items_from_columns

INTERACTIONS = "interactions.csv"
ITEMS = "items.csv"
META = "import.json"  # the checked manifest and what the importer found (worker/importer/)
SIDES = ("train", "dev", "test")


def raw_from_frames(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    split_column: bool,
    item_category: str = "items",
    item_name: str = "item",
) -> RawDataset:
    """A ``RawDataset`` of checked frames: ``interactions`` has string ``user`` / ``item``,
    int64 ``timestamp`` and, with ``split_column``, ``split`` in train / dev / test."""
    frame = pd.DataFrame(
        {
            "user": interactions["user"].astype(str).to_numpy(),
            "item": interactions["item"].astype(str).to_numpy(),
            "timestamp": interactions["timestamp"].astype("int64").to_numpy(),
            "rating": float("nan"),
        }
    )
    meta = (
        items_from_columns(items.astype(str), "item")
        if items is not None and len(items)
        else items_frame(pd.Series(dtype=str))
    )
    presplit = None
    if split_column:
        side = interactions["split"].astype(str).to_numpy()
        presplit = {s: frame[side == s].reset_index(drop=True) for s in SIDES}
    return RawDataset(name, frame, meta, item_category, item_name, presplit=presplit)


def read_imported(path: str | Path) -> RawDataset:
    """The normalised import directory ``path`` (written by ``recsae import``)."""
    directory = Path(path)
    meta_path = directory / META
    if not meta_path.is_file():
        raise DataFormatError(
            f"{directory}: not an imported model's directory ({META} is missing); "
            "make one with recsae import DIR --name NAME"
        )
    meta = json.loads(meta_path.read_text())
    interactions = pd.read_csv(
        directory / INTERACTIONS, dtype={"user": str, "item": str, "split": str}
    )
    items_path = directory / ITEMS
    items = (
        pd.read_csv(items_path, dtype=str, keep_default_na=False) if items_path.is_file() else None
    )
    return raw_from_frames(
        meta.get("dataset") or directory.name,
        interactions,
        items,
        bool(meta.get("split_column")),
        meta.get("item_category", "items"),
        meta.get("item_name", "item"),
    )
