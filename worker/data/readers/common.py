"""What every reader shares: the error type, the RawDataset columns, and the small helpers that
turn a file into those columns with errors that name the file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

ITEM_COLUMNS = ["item", "title", "genres", "tags", "text"]
NO_GENRES = "(no genres listed)"  # MovieLens' marker for an item without genres


class DataFormatError(ValueError):
    """A data file is missing, unreadable, or does not have the layout its format expects."""


# -- small shared helpers ---------------------------------------------------------------------


def require_file(directory: Path, name: str, what: str) -> Path:
    path = directory / name
    if not directory.is_dir():
        raise DataFormatError(f"{directory}: expected a directory holding {name} ({what})")
    if not path.is_file():
        present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise DataFormatError(f"{name} in {directory}: missing; expected {what}; found {present}")
    return path


def check_columns(frame: pd.DataFrame, expected: list[str], path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path.name} in {path.parent}: expected columns {','.join(expected)}, "
            f"found {','.join(map(str, frame.columns))}"
        )


def read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv whose parse errors name the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path.name} in {path.parent}: cannot parse: {error}") from error


def read_double_colon(path: Path, names: list[str]) -> pd.DataFrame:
    """Read a MovieLens ``::``-separated file with the fast C parser (the python engine is slow).

    Titles hold single colons ("Star Wars: Episode IV") but never ``::`` or tabs.
    """
    text = path.read_text(encoding="latin-1").replace("::", "\t")
    frame = pd.read_csv(
        io.StringIO(text),
        sep="\t",
        header=None,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
    )
    if frame.shape[1] != len(names):
        raise DataFormatError(
            f"{path.name} in {path.parent}: expected {len(names)} '::'-separated fields "
            f"({'::'.join(names)}), found {frame.shape[1]}"
        )
    frame.columns = names
    return frame


def as_int64(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """Integer timestamps; ISO 8601 dates become Unix seconds. Anything else is an error."""
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        raise DataFormatError(
            f"{path.name} in {path.parent}: column {column} is empty on "
            f"{int(empty.sum())} rows (first at data row {int(np.argmax(empty.to_numpy())) + 1})"
        )
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        if not np.all(np.floor(numeric) == numeric):
            raise DataFormatError(
                f"{path.name} in {path.parent}: column {column} must hold whole numbers "
                f"(Unix seconds) or dates"
            )
        return numeric.to_numpy().astype(np.int64)
    dates = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    if dates.isna().any():
        neither = dates.isna() & numeric.isna()
        example = values[neither].iloc[0] if neither.any() else values[dates.isna()].iloc[0]
        problem = "is neither" if neither.any() else "is a number among dates"
        raise DataFormatError(
            f"{path.name} in {path.parent}: column {column} must hold Unix seconds or "
            f"ISO 8601 dates; {example!r} {problem}"
        )
    seconds = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy().astype(np.int64)


def as_rating(values: pd.Series, path: Path, column: str) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        raise DataFormatError(
            f"{path.name} in {path.parent}: column {column} must be numeric, "
            f"found {values[bad].iloc[0]!r}"
        )
    return numeric.to_numpy(dtype=np.float64)


def interactions_frame(
    user: pd.Series, item: pd.Series, timestamp: np.ndarray, rating: np.ndarray | None
) -> pd.DataFrame:
    n = len(user)
    return pd.DataFrame(
        {
            "user": user.astype(str).str.strip().to_numpy(),
            "item": item.astype(str).str.strip().to_numpy(),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
            "rating": np.full(n, np.nan) if rating is None else np.asarray(rating, np.float64),
        }
    )


def items_frame(
    item: pd.Series,
    title: pd.Series | None = None,
    genres: list[list[str]] | None = None,
    tags: list[list[str]] | None = None,
    text: pd.Series | None = None,
) -> pd.DataFrame:
    n = len(item)

    def strings(s: pd.Series | None) -> list[str]:
        return [""] * n if s is None else s.fillna("").astype(str).str.strip().tolist()

    return pd.DataFrame(
        {
            "item": item.astype(str).str.strip().to_numpy(),
            "title": strings(title),
            "genres": genres if genres is not None else [[] for _ in range(n)],
            "tags": tags if tags is not None else [[] for _ in range(n)],
            "text": strings(text),
        },
        columns=ITEM_COLUMNS,
    )


def split_bar(values: pd.Series) -> list[list[str]]:
    """'A|B' -> ['A', 'B']; empty, NaN and MovieLens' '(no genres listed)' -> []."""
    out = []
    for value in values.fillna("").astype(str):
        parts = [p.strip() for p in value.split("|")]
        out.append([p for p in parts if p and p != NO_GENRES])
    return out


def tags_by_item(item: pd.Series, tag: pd.Series) -> dict[str, list[str]]:
    """Per item: lower-cased, stripped, distinct tags, most frequent first (ties alphabetical)."""
    frame = pd.DataFrame({"item": item.astype(str), "tag": tag.astype(str).str.strip().str.lower()})
    frame = frame[frame["tag"] != ""]
    counts = frame.groupby(["item", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    return {k: list(g["tag"]) for k, g in counts.groupby("item", sort=False)}


def items_from_columns(
    meta: pd.DataFrame, id_column: str, feature_prefix: str | None = None
) -> pd.DataFrame:
    """Map an item table with free-form columns onto the RawDataset items columns."""
    title = meta["title"] if "title" in meta.columns else None
    genres = split_bar(meta["genres"]) if "genres" in meta.columns else None
    tags = split_bar(meta["tags"]) if "tags" in meta.columns else [[] for _ in range(len(meta))]
    text_columns = []
    for column in meta.columns:
        if column in (id_column, "title", "genres", "tags"):
            continue
        if feature_prefix and column.startswith(feature_prefix):
            name = column[len(feature_prefix) :]
            values = meta[column].fillna("").astype(str).str.strip()
            for row, value in zip(tags, values, strict=True):
                if value:
                    row.append(f"{name}_{value}")
        else:
            text_columns.append(column)
    text = None
    if text_columns:
        parts = meta[text_columns].fillna("").astype(str)
        text = parts.apply(lambda row: " ".join(v.strip() for v in row if v.strip()), axis=1)
    return items_frame(meta[id_column], title=title, genres=genres, tags=tags, text=text)
