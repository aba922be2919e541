"""Reading the files an import directory names (docs/import.md, the formats): arrays from
``.npy``, ``.safetensors`` or Parquet, tables from CSV/TSV or Parquet, id lists; each checked for
what every later check assumes (a file inside the directory, its columns, finite float values).
Every refusal is an :class:`ImportRefused` naming the file, the row and what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import SafetensorError
from safetensors.numpy import load_file

from worker.data.readers.common import DataFormatError

MANIFEST = "manifest.json"


class ImportRefused(DataFormatError):
    """An import directory that cannot be imported as it is; the message says what to fix."""


def named_in(directory: Path, name: str) -> str:
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
    where = named_in(directory, path.name)
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
    where = named_in(directory, path.name)
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


def float_matrix(array: np.ndarray, where: str, what: str, ndim: int = 2) -> np.ndarray:
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


def read_ids(directory: Path, name: object, what: str, column: str) -> pd.DataFrame:
    """An id table (CSV/Parquet with ``column``) or a 1-D ``.npy`` of ids."""
    path = _file(directory, name, what)
    if path.suffix == ".npy":
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1:
            raise ImportRefused(f"{named_in(directory, path.name)}: {what} must be 1-D")
        return pd.DataFrame({column: [str(v).strip() for v in values]})
    return read_table(directory, name, what, [column])
