"""The prepared dataset every later stage reads: remapped ids, chronological sequences, item text.

A ``RawDataset`` is what a reader returns (original ids, untouched); ``preprocess`` turns it into a
``Dataset`` (docs/method.md §1.1): positive interactions, iterative k-core, per-user chronological
order, leave-one-out. Internal ids are dense ``0..n-1``; index ``i`` of every per-item list is item
``i``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import save_npz, write_text
from core.rundir import DATASET_ARRAYS, DATASET_META


@dataclass
class RawDataset:
    """What a reader returns: interactions and item metadata with the dataset's own ids.

    interactions: columns ``user`` (str), ``item`` (str), ``timestamp`` (int64), ``rating``
        (float, NaN where the data has none).
    items: column ``item`` (str) plus ``title`` (str) and any of ``genres`` / ``tags``
        (list[str]) and ``text`` (str, other free text). Items without metadata may be missing.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    item_category: str = "items"  # how the LLM prompts name the catalogue, e.g. "movies"
    item_name: str = "item"  # one element of it, e.g. "movie"
    # Readers for already-split data (ReChorus layout) set this: {"train"|"dev"|"test": frame}.
    presplit: dict[str, pd.DataFrame] | None = None


@dataclass
class Dataset:
    """A prepared dataset (docs/method.md §1.1).

    sequences[u]: int64 array, user u's positive items in (timestamp, original item id) order.
    The last item is the test target, the one before it the dev target, the rest is train.
    """

    name: str
    user_ids: list[str]  # original user id of internal user u
    item_ids: list[str]  # original item id of internal item i
    sequences: list[np.ndarray]
    timestamps: list[np.ndarray]
    item_title: list[str]
    item_genres: list[list[str]]
    item_tags: list[list[str]]
    item_text: list[str]  # the metadata text TF-IDF and the LLM see: title, genres, tags
    item_category: str = "items"
    item_name: str = "item"
    stats: dict = field(default_factory=dict)  # users, items, interactions, train/dev/test, rounds

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_items(self, u: int) -> np.ndarray:
        return self.sequences[u][:-2]

    def dev_item(self, u: int) -> int:
        return int(self.sequences[u][-2])

    def test_item(self, u: int) -> int:
        return int(self.sequences[u][-1])

    def train_pairs(self) -> np.ndarray:
        """[N, 2] (user, item) of every training interaction, users ascending, time order within."""
        parts = [
            np.stack([np.full(len(s) - 2, u, dtype=np.int64), s[:-2]], axis=1)
            for u, s in enumerate(self.sequences)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)

    # -- persistence: one directory, a json for the small things and an npz for the arrays --
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        # each file atomically (core/atomic.py): a killed prepare never leaves half a file
        items = np.concatenate(self.sequences) if self.sequences else np.zeros(0, np.int64)
        times = np.concatenate(self.timestamps) if self.timestamps else np.zeros(0)
        save_npz(
            directory / DATASET_ARRAYS,
            {"lengths": lengths, "items": items, "timestamps": times},
            compressed=True,
        )
        meta = {
            "name": self.name,
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "item_title": self.item_title,
            "item_genres": self.item_genres,
            "item_tags": self.item_tags,
            "item_text": self.item_text,
            "item_category": self.item_category,
            "item_name": self.item_name,
            "stats": self.stats,
        }
        write_text(directory / DATASET_META, json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> Dataset:
        directory = Path(directory)
        meta = json.loads((directory / DATASET_META).read_text())
        arrays = np.load(directory / DATASET_ARRAYS)
        bounds = np.cumsum(arrays["lengths"])[:-1]
        return cls(
            sequences=[a.astype(np.int64) for a in np.split(arrays["items"], bounds)],
            timestamps=[a for a in np.split(arrays["timestamps"], bounds)],
            **meta,
        )
