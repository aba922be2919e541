"""The ReChorus layout: a fixed train / dev / test split and an optional item_meta.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from worker.data.dataset import RawDataset
from worker.data.readers.common import (
    as_int64,
    check_columns,
    interactions_frame,
    items_frame,
    items_from_columns,
    read_csv,
    require_file,
)


def read_rechorus(
    path: str | Path, item_category: str = "items", item_name: str = "item"
) -> RawDataset:
    """ReChorus layout: train.csv / dev.csv / test.csv (tab: user_id, item_id, time; dev and test
    may carry neg_items, ignored) and an optional item_meta.csv (tab: item_id plus columns).

    item_meta columns: ``title`` is the title, ``genres`` / ``tags`` are split on '|', columns
    starting with ``i_`` are categorical features and become tags ``<name>_<value>`` (one
    token for TF-IDF), any other column is free text. The split is kept: ``presplit`` is set.
    """
    directory = Path(path)
    frames: dict[str, pd.DataFrame] = {}
    for side in ("train", "dev", "test"):
        file = require_file(directory, f"{side}.csv", "tab-separated user_id, item_id, time")
        frame = read_csv(file, sep="\t", dtype={"user_id": str, "item_id": str})
        check_columns(frame, ["user_id", "item_id", "time"], file)
        frames[side] = interactions_frame(
            frame["user_id"], frame["item_id"], as_int64(frame["time"], file, "time"), None
        )

    meta_path = directory / "item_meta.csv"
    if meta_path.is_file():
        meta = read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
        check_columns(meta, ["item_id"], meta_path)
        items = items_from_columns(meta, "item_id", feature_prefix="i_")
    else:
        items = items_frame(pd.Series(dtype=str))
    interactions = pd.concat(list(frames.values()), ignore_index=True)
    return RawDataset(
        directory.name, interactions, items, item_category, item_name, presplit=frames
    )
