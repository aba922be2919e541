"""Readers: one local data layout in, one ``RawDataset`` out (original ids, nothing filtered).

Every reader takes a local path (nothing is downloaded) and returns the contract of
``worker.data.dataset.RawDataset``:

- interactions: ``user`` (str), ``item`` (str), ``timestamp`` (int64), ``rating`` (float, NaN
  where the data has none);
- items: ``item`` (str), ``title`` (str), ``genres`` (list[str]), ``tags`` (list[str]),
  ``text`` (str).

Filtering, k-core and the split are ``preprocess``'s job (SPEC §1.1), not the readers'. A file
that is missing or has the wrong columns raises ``DataFormatError`` naming the file and what
was expected, so a user pointing the worker at the wrong folder learns what to fix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from worker.data.dataset import RawDataset

INTERACTION_COLUMNS = ["user", "item", "timestamp", "rating"]
ITEM_COLUMNS = ["item", "title", "genres", "tags", "text"]

# The 19 genres of ml-100k, in the order of u.item's flag columns (used when u.genre is absent).
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
NO_GENRES = "(no genres listed)"  # MovieLens' marker for an item without genres


class DataFormatError(ValueError):
    """A data file is missing, unreadable, or does not have the layout its format expects."""


# -- small shared helpers ---------------------------------------------------------------------


def _require_file(directory: Path, name: str, what: str) -> Path:
    path = directory / name
    if not directory.is_dir():
        raise DataFormatError(f"{directory}: expected a directory holding {name} ({what})")
    if not path.is_file():
        present = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise DataFormatError(f"{name} in {directory}: missing; expected {what}; found {present}")
    return path


def _check_columns(frame: pd.DataFrame, expected: list[str], path: Path) -> None:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{path.name} in {path.parent}: expected columns {','.join(expected)}, "
            f"found {','.join(map(str, frame.columns))}"
        )


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv whose parse errors name the file."""
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFormatError(f"{path.name} in {path.parent}: cannot parse: {error}") from error


def _read_double_colon(path: Path, names: list[str]) -> pd.DataFrame:
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


def _as_int64(values: pd.Series, path: Path, column: str) -> np.ndarray:
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


def _as_rating(values: pd.Series, path: Path, column: str) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        raise DataFormatError(
            f"{path.name} in {path.parent}: column {column} must be numeric, "
            f"found {values[bad].iloc[0]!r}"
        )
    return numeric.to_numpy(dtype=np.float64)


def _interactions(
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


def _items(
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


def _split_bar(values: pd.Series) -> list[list[str]]:
    """'A|B' -> ['A', 'B']; empty, NaN and MovieLens' '(no genres listed)' -> []."""
    out = []
    for value in values.fillna("").astype(str):
        parts = [p.strip() for p in value.split("|")]
        out.append([p for p in parts if p and p != NO_GENRES])
    return out


def _tags_by_item(item: pd.Series, tag: pd.Series) -> dict[str, list[str]]:
    """Per item: lower-cased, stripped, distinct tags, most frequent first (ties alphabetical)."""
    frame = pd.DataFrame({"item": item.astype(str), "tag": tag.astype(str).str.strip().str.lower()})
    frame = frame[frame["tag"] != ""]
    counts = frame.groupby(["item", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    return {k: list(g["tag"]) for k, g in counts.groupby("item", sort=False)}


# -- the formats --------------------------------------------------------------------------------


def read_movielens_latest(path: str | Path) -> RawDataset:
    """MovieLens "latest" layout (ml-latest-small, ml-latest, ml-25m, ml-32m).

    ratings.csv (userId,movieId,rating,timestamp), movies.csv (movieId,title,genres) and an
    optional tags.csv (userId,movieId,tag,timestamp) whose tags become the items' ``tags``.
    """
    directory = Path(path)
    ratings_path = _require_file(directory, "ratings.csv", "userId,movieId,rating,timestamp")
    movies_path = _require_file(directory, "movies.csv", "movieId,title,genres")
    ratings = _read_csv(ratings_path, dtype={"userId": str, "movieId": str})
    _check_columns(ratings, ["userId", "movieId", "rating", "timestamp"], ratings_path)
    movies = _read_csv(movies_path, dtype=str, keep_default_na=False)
    _check_columns(movies, ["movieId", "title", "genres"], movies_path)

    tags: dict[str, list[str]] = {}
    tags_path = directory / "tags.csv"
    if tags_path.is_file():
        tag_frame = _read_csv(tags_path, dtype=str, keep_default_na=False)
        _check_columns(tag_frame, ["userId", "movieId", "tag", "timestamp"], tags_path)
        tags = _tags_by_item(tag_frame["movieId"], tag_frame["tag"])

    interactions = _interactions(
        ratings["userId"],
        ratings["movieId"],
        _as_int64(ratings["timestamp"], ratings_path, "timestamp"),
        _as_rating(ratings["rating"], ratings_path, "rating"),
    )
    item_ids = movies["movieId"].str.strip()
    items = _items(
        item_ids,
        title=movies["title"],
        genres=_split_bar(movies["genres"]),
        tags=[tags.get(i, []) for i in item_ids],
    )
    return RawDataset(directory.name, interactions, items, "movies", "movie")


def read_ml100k(path: str | Path) -> RawDataset:
    """MovieLens 100K: u.data (tab: user item rating timestamp) and u.item (pipe, latin-1).

    u.item: id|title|release date|video release date|IMDb URL|19 genre flags; genre names come
    from u.genre when present, else the standard 19.
    """
    directory = Path(path)
    data_path = _require_file(directory, "u.data", "tab-separated user item rating timestamp")
    item_path = _require_file(
        directory, "u.item", "pipe-separated id|title|release|video release|url|19 genre flags"
    )
    ratings = _read_csv(data_path, sep="\t", header=None, dtype=str)
    if ratings.shape[1] != 4:
        raise DataFormatError(
            f"u.data in {directory}: expected 4 tab-separated columns "
            f"(user item rating timestamp), found {ratings.shape[1]}"
        )
    ratings.columns = ["user", "item", "rating", "timestamp"]

    genre_names = ML100K_GENRES
    genre_path = directory / "u.genre"
    if genre_path.is_file():
        lines = genre_path.read_text(encoding="latin-1").splitlines()
        pairs = [line.rsplit("|", 1) for line in lines if line.strip()]
        if any(len(p) != 2 or not p[1].strip().isdigit() for p in pairs):
            raise DataFormatError(f"u.genre in {directory}: expected lines 'name|index'")
        genre_names = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]

    movies = _read_csv(
        item_path,
        sep="|",
        header=None,
        dtype=str,
        encoding="latin-1",
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
    )
    if movies.shape[1] != 5 + len(genre_names):
        raise DataFormatError(
            f"u.item in {directory}: expected {5 + len(genre_names)} pipe-separated fields "
            f"(id|title|release date|video release date|IMDb URL|{len(genre_names)} genre "
            f"flags), found {movies.shape[1]}"
        )
    flags = movies.iloc[:, 5:].to_numpy() == "1"
    genres = [[g for g, on in zip(genre_names, row, strict=True) if on] for row in flags]

    interactions = _interactions(
        ratings["user"],
        ratings["item"],
        _as_int64(ratings["timestamp"], data_path, "timestamp"),
        _as_rating(ratings["rating"], data_path, "rating"),
    )
    items = _items(movies.iloc[:, 0], title=movies.iloc[:, 1], genres=genres)
    return RawDataset(directory.name, interactions, items, "movies", "movie")


def read_ml1m(path: str | Path) -> RawDataset:
    """MovieLens 1M: ratings.dat (UserID::MovieID::Rating::Timestamp) and movies.dat
    (MovieID::Title::Genres), both latin-1."""
    directory = Path(path)
    ratings_path = _require_file(directory, "ratings.dat", "UserID::MovieID::Rating::Timestamp")
    movies_path = _require_file(directory, "movies.dat", "MovieID::Title::Genres")
    ratings = _read_double_colon(ratings_path, ["user", "item", "rating", "timestamp"])
    movies = _read_double_colon(movies_path, ["item", "title", "genres"])
    interactions = _interactions(
        ratings["user"],
        ratings["item"],
        _as_int64(ratings["timestamp"], ratings_path, "timestamp"),
        _as_rating(ratings["rating"], ratings_path, "rating"),
    )
    items = _items(movies["item"], title=movies["title"], genres=_split_bar(movies["genres"]))
    return RawDataset(directory.name, interactions, items, "movies", "movie")


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
        file = _require_file(directory, f"{side}.csv", "tab-separated user_id, item_id, time")
        frame = _read_csv(file, sep="\t", dtype={"user_id": str, "item_id": str})
        _check_columns(frame, ["user_id", "item_id", "time"], file)
        frames[side] = _interactions(
            frame["user_id"], frame["item_id"], _as_int64(frame["time"], file, "time"), None
        )

    meta_path = directory / "item_meta.csv"
    if meta_path.is_file():
        meta = _read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
        _check_columns(meta, ["item_id"], meta_path)
        items = _items_from_columns(meta, "item_id", feature_prefix="i_")
    else:
        items = _items(pd.Series(dtype=str))
    interactions = pd.concat(list(frames.values()), ignore_index=True)
    return RawDataset(
        directory.name, interactions, items, item_category, item_name, presplit=frames
    )


def _items_from_columns(
    meta: pd.DataFrame, id_column: str, feature_prefix: str | None = None
) -> pd.DataFrame:
    """Map an item table with free-form columns onto the RawDataset items columns."""
    title = meta["title"] if "title" in meta.columns else None
    genres = _split_bar(meta["genres"]) if "genres" in meta.columns else None
    tags = _split_bar(meta["tags"]) if "tags" in meta.columns else [[] for _ in range(len(meta))]
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
    return _items(meta[id_column], title=title, genres=genres, tags=tags, text=text)


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
    has the id column ``item_id_column``, a ``title`` column if present, ``genres`` / ``tags``
    split on '|', and every other column is free text.
    """
    path = Path(path)
    if path.is_file():
        directory, interactions_file = path.parent, path.name
    else:
        directory = path
    expected = [user_column, item_column, timestamp_column]
    file = _require_file(directory, interactions_file, f"columns {','.join(expected)}")
    frame = _read_csv(file, sep=sep, dtype={user_column: str, item_column: str})
    _check_columns(frame, expected, file)
    rating = (
        _as_rating(frame[rating_column], file, rating_column)
        if rating_column in frame.columns
        else None
    )
    interactions = _interactions(
        frame[user_column],
        frame[item_column],
        _as_int64(frame[timestamp_column], file, timestamp_column),
        rating,
    )
    if items_file is not None and (directory / items_file).is_file():
        items_path = directory / items_file
        meta = _read_csv(items_path, sep=sep, dtype=str, keep_default_na=False)
        _check_columns(meta, [item_id_column], items_path)
        items = _items_from_columns(meta, item_id_column)
    else:
        items = _items(pd.Series(dtype=str))
    return RawDataset(name or directory.name, interactions, items, item_category, item_name)


READERS: dict[str, Callable[..., RawDataset]] = {
    "movielens-latest": read_movielens_latest,
    "ml-100k": read_ml100k,
    "ml-1m": read_ml1m,
    "rechorus": read_rechorus,
    "generic": read_generic,
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
