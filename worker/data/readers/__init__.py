"""Readers: one local data layout in, one ``RawDataset`` out (original ids, nothing filtered).

Every reader takes a local path (nothing is downloaded) and returns the contract of
``worker.data.dataset.RawDataset``:

- interactions: ``user`` (str), ``item`` (str), ``timestamp`` (int64), ``rating`` (float, NaN
  where the data has none);
- items: ``item`` (str), ``title`` (str), ``genres`` (list[str]), ``tags`` (list[str]),
  ``text`` (str).

Filtering, k-core and the split are ``preprocess``'s job (docs/method.md §1.1), not the readers'. A
file that is missing or has the wrong columns raises ``DataFormatError`` naming the file and what
was expected, so a user pointing the worker at the wrong folder learns what to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from worker.data.dataset import RawDataset
from worker.data.readers.common import ITEM_COLUMNS, NO_GENRES, DataFormatError
from worker.data.readers.generic import read_generic
from worker.data.readers.imported import read_imported
from worker.data.readers.movielens import read_ml1m, read_ml100k, read_movielens_latest
from worker.data.readers.rechorus import read_rechorus

__all__ = [
    "ITEM_COLUMNS",
    "NO_GENRES",
    "READERS",
    "DataFormatError",
    "read_dataset",
    "read_generic",
    "read_imported",
    "read_ml100k",
    "read_ml1m",
    "read_movielens_latest",
    "read_rechorus",
]

READERS: dict[str, Callable[..., RawDataset]] = {
    "movielens-latest": read_movielens_latest,
    "ml-100k": read_ml100k,
    "ml-1m": read_ml1m,
    "rechorus": read_rechorus,
    "generic": read_generic,
    "imported": read_imported,  # written by recsae import (docs/import.md)
}


def read_dataset(format: str, path: str | Path, **options: object) -> RawDataset:
    """Read ``path`` with the reader registered for ``format`` (a key of ``READERS``)."""
    if format not in READERS:
        raise DataFormatError(
            f"unknown data format {format!r}; known formats: {', '.join(sorted(READERS))}"
        )
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path}: no such file or directory (format {format!r})")
    return READERS[format](path, **options)
