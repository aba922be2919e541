"""MovieLens layouts: "latest" (ml-latest-small, ml-latest, ml-25m, ml-32m), ml-100k, ml-1m."""

from __future__ import annotations

import csv
from pathlib import Path

from worker.data.dataset import RawDataset
from worker.data.readers.common import (
    DataFormatError,
    as_int64,
    as_rating,
    check_columns,
    interactions_frame,
    items_frame,
    read_csv,
    read_double_colon,
    require_file,
    split_bar,
    tags_by_item,
)

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


def read_movielens_latest(path: str | Path) -> RawDataset:
    """MovieLens "latest" layout (ml-latest-small, ml-latest, ml-25m, ml-32m).

    ratings.csv (userId,movieId,rating,timestamp), movies.csv (movieId,title,genres) and an
    optional tags.csv (userId,movieId,tag,timestamp) whose tags become the items' ``tags``.
    """
    directory = Path(path)
    ratings_path = require_file(directory, "ratings.csv", "userId,movieId,rating,timestamp")
    movies_path = require_file(directory, "movies.csv", "movieId,title,genres")
    ratings = read_csv(ratings_path, dtype={"userId": str, "movieId": str})
    check_columns(ratings, ["userId", "movieId", "rating", "timestamp"], ratings_path)
    movies = read_csv(movies_path, dtype=str, keep_default_na=False)
    check_columns(movies, ["movieId", "title", "genres"], movies_path)

    tags: dict[str, list[str]] = {}
    tags_path = directory / "tags.csv"
    if tags_path.is_file():
        tag_frame = read_csv(tags_path, dtype=str, keep_default_na=False)
        check_columns(tag_frame, ["userId", "movieId", "tag", "timestamp"], tags_path)
        tags = tags_by_item(tag_frame["movieId"], tag_frame["tag"])

    interactions = interactions_frame(
        ratings["userId"],
        ratings["movieId"],
        as_int64(ratings["timestamp"], ratings_path, "timestamp"),
        as_rating(ratings["rating"], ratings_path, "rating"),
    )
    item_ids = movies["movieId"].str.strip()
    items = items_frame(
        item_ids,
        title=movies["title"],
        genres=split_bar(movies["genres"]),
        tags=[tags.get(i, []) for i in item_ids],
    )
    return RawDataset(directory.name, interactions, items, "movies", "movie")


def read_ml100k(path: str | Path) -> RawDataset:
    """MovieLens 100K: u.data (tab: user item rating timestamp) and u.item (pipe, latin-1).

    u.item: id|title|release date|video release date|IMDb URL|19 genre flags; genre names come
    from u.genre when present, else the standard 19.
    """
    directory = Path(path)
    data_path = require_file(directory, "u.data", "tab-separated user item rating timestamp")
    item_path = require_file(
        directory, "u.item", "pipe-separated id|title|release|video release|url|19 genre flags"
    )
    ratings = read_csv(data_path, sep="\t", header=None, dtype=str)
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

    movies = read_csv(
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

    interactions = interactions_frame(
        ratings["user"],
        ratings["item"],
        as_int64(ratings["timestamp"], data_path, "timestamp"),
        as_rating(ratings["rating"], data_path, "rating"),
    )
    items = items_frame(movies.iloc[:, 0], title=movies.iloc[:, 1], genres=genres)
    return RawDataset(directory.name, interactions, items, "movies", "movie")


def read_ml1m(path: str | Path) -> RawDataset:
    """MovieLens 1M: ratings.dat (UserID::MovieID::Rating::Timestamp) and movies.dat
    (MovieID::Title::Genres), both latin-1."""
    directory = Path(path)
    ratings_path = require_file(directory, "ratings.dat", "UserID::MovieID::Rating::Timestamp")
    movies_path = require_file(directory, "movies.dat", "MovieID::Title::Genres")
    ratings = read_double_colon(ratings_path, ["user", "item", "rating", "timestamp"])
    movies = read_double_colon(movies_path, ["item", "title", "genres"])
    interactions = interactions_frame(
        ratings["user"],
        ratings["item"],
        as_int64(ratings["timestamp"], ratings_path, "timestamp"),
        as_rating(ratings["rating"], ratings_path, "rating"),
    )
    items = items_frame(movies["item"], title=movies["title"], genres=split_bar(movies["genres"]))
    return RawDataset(directory.name, interactions, items, "movies", "movie")
