"""Any interaction log: a CSV of (user, item, timestamp[, rating]) and an optional items CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from worker.data.dataset import RawDataset
from worker.data.readers.common import (
    DataFormatError,
    as_int64,
    as_rating,
    check_columns,
    interactions_frame,
    items_frame,
    items_from_columns,
    read_csv,
    require_file,
)


def read_generic(
    path: str | Path,
    interactions_file: str = "interactions.csv",
    items_file: str | None = "items.csv",
    user_column: str = "user",
    item_column: str = "item",
    timestamp_column: str = "timestamp",
    rating_column: str = "rating",
    item_id_column: str = "item",
    sep: str = ",",
    name: str | None = None,
    item_category: str = "items",
    item_name: str = "item",
) -> RawDataset:
    """Any interaction log: a CSV of (user, item, timestamp[, rating]) and an optional items CSV.

    ``path`` is a directory holding ``interactions_file`` (and ``items_file`` if present) or
    the interactions file itself. Timestamps are Unix seconds or ISO 8601 dates. The items CSV
    has the id column ``item_id_column`` (by default ``item``, or ``id`` when there is no
    ``item`` column), a ``title`` column if present, ``genres`` / ``tags`` split on '|', and every
    other column is free text.
    """
    path = Path(path)
    if path.is_file():
        directory, interactions_file = path.parent, path.name
    else:
        directory = path
    expected = [user_column, item_column, timestamp_column]
    file = require_file(directory, interactions_file, f"columns {','.join(expected)}")
    frame = read_csv(file, sep=sep, dtype={user_column: str, item_column: str})
    check_columns(frame, expected, file)
    rating = (
        as_rating(frame[rating_column], file, rating_column)
        if rating_column in frame.columns
        else None
    )
    interactions = interactions_frame(
        frame[user_column],
        frame[item_column],
        as_int64(frame[timestamp_column], file, timestamp_column),
        rating,
    )
    if items_file is not None and (directory / items_file).is_file():
        items_path = directory / items_file
        meta = read_csv(items_path, sep=sep, dtype=str, keep_default_na=False)
        id_column = _item_id_column(meta, item_id_column, items_path)
        items = items_from_columns(meta, id_column)
    else:
        items = items_frame(pd.Series(dtype=str))
    return RawDataset(name or directory.name, interactions, items, item_category, item_name)


def _item_id_column(meta: pd.DataFrame, item_id_column: str, path: Path) -> str:
    """The items CSV's id column: ``item_id_column``; for the default ``item``, ``id`` too."""
    if item_id_column in meta.columns:
        return item_id_column
    if item_id_column == "item" and "id" in meta.columns:
        return "id"
    accepted = "item or id" if item_id_column == "item" else item_id_column
    raise DataFormatError(
        f"{path.name} in {path.parent}: expected an id column named {accepted}, "
        f"found {','.join(map(str, meta.columns))}"
    )
