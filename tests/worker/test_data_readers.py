"""Readers: each format from small files in tmp_path, the error paths, the generic round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from worker.data.readers import READERS, DataFormatError, read_dataset
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv

DEMO = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def check_contract(raw) -> None:
    inter = raw.interactions
    assert list(inter.columns) == ["user", "item", "timestamp", "rating"]
    assert inter["timestamp"].dtype == np.int64
    assert inter["rating"].dtype == np.float64
    assert all(isinstance(v, str) for v in inter["user"]) and all(
        isinstance(v, str) for v in inter["item"]
    )
    assert list(raw.items.columns) == ["item", "title", "genres", "tags", "text"]
    for genres, tags in zip(raw.items["genres"], raw.items["tags"], strict=True):
        assert isinstance(genres, list) and isinstance(tags, list)


# -- movielens-latest ---------------------------------------------------------------------------


@pytest.fixture
def latest_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ml-tiny"
    write(
        d / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,2,3.5,90\n2,10,5,80\n"
    )
    write(
        d / "movies.csv",
        'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n2,Empty (2000),'
        "(no genres listed)\n",
    )
    write(
        d / "tags.csv",
        "userId,movieId,tag,timestamp\n1,10,Pacino,1\n2,10, pacino ,2\n1,10,heist,3\n"
        "3,10,Cool,4\n3,10,heist,5\n3,10,pacino,6\n",
    )
    return d


def test_movielens_latest_reads_genres_and_tags(latest_dir: Path) -> None:
    raw = read_dataset("movielens-latest", latest_dir)
    check_contract(raw)
    assert raw.interactions["user"].tolist() == ["1", "1", "2"]
    assert raw.interactions["timestamp"].tolist() == [100, 90, 80]
    assert raw.interactions["rating"].tolist() == [4.0, 3.5, 5.0]
    items = raw.items.set_index("item")
    assert items.loc["10", "title"] == "Heat, The (1995)"
    assert items.loc["10", "genres"] == ["Action", "Crime"]
    # lower-cased, stripped, distinct; by frequency (pacino 3, heist 2, cool 1)
    assert items.loc["10", "tags"] == ["pacino", "heist", "cool"]
    assert items.loc["2", "genres"] == [] and items.loc["2", "tags"] == []
    assert (raw.item_category, raw.item_name) == ("movies", "movie")
    assert raw.presplit is None


def test_movielens_latest_without_tags(latest_dir: Path) -> None:
    (latest_dir / "tags.csv").unlink()
    raw = read_dataset("movielens-latest", latest_dir)
    assert all(t == [] for t in raw.items["tags"])


def test_movielens_latest_demo_data() -> None:
    raw = read_dataset("movielens-latest", DEMO)
    check_contract(raw)
    assert len(raw.interactions) == 100_836
    assert len(raw.items) == 9_742
    assert raw.interactions["user"].nunique() == 610


def test_wrong_columns_name_the_file_and_the_expectation(latest_dir: Path) -> None:
    write(latest_dir / "ratings.csv", "a,b\n1,2\n")
    with pytest.raises(DataFormatError) as error:
        read_dataset("movielens-latest", latest_dir)
    assert str(error.value) == (
        f"ratings.csv in {latest_dir}: expected columns userId,movieId,rating,timestamp, found a,b"
    )


def test_missing_file_names_the_file(latest_dir: Path) -> None:
    (latest_dir / "movies.csv").unlink()
    with pytest.raises(DataFormatError, match=r"movies\.csv in .*ml-tiny: missing; expected"):
        read_dataset("movielens-latest", latest_dir)


def test_missing_directory_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file or directory"):
        read_dataset("ml-1m", tmp_path / "nope")
    with pytest.raises(DataFormatError) as error:
        read_dataset("netflix", tmp_path)
    for name in READERS:
        assert name in str(error.value)


def test_non_numeric_rating_is_an_error(latest_dir: Path) -> None:
    write(latest_dir / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,good,100\n")
    with pytest.raises(DataFormatError, match="rating must be numeric, found 'good'"):
        read_dataset("movielens-latest", latest_dir)


# -- ml-100k ------------------------------------------------------------------------------------


def ml100k_dir(tmp_path: Path, with_genre_file: bool) -> Path:
    d = tmp_path / "ml-100k"
    write(d / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags_242 = ["0"] * 19
    flags_242[5] = "1"  # Comedy
    flags_302 = ["0"] * 19
    flags_302[6], flags_302[16] = "1", "1"  # Crime, Thriller
    write(
        d / "u.item",
        f"242|Kolya (1996)|24-Jan-1997||http://x|{'|'.join(flags_242)}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{'|'.join(flags_302)}\n"
        f"303|Caf\u00e9 (1997)|01-Jan-1997||http://z|{'|'.join(['0'] * 19)}\n",
        encoding="latin-1",
    )
    if with_genre_file:
        names = ["unknown", "Action", "Adventure", "Animation", "Kids", "Funny", "Crime"]
        names += [f"g{i}" for i in range(7, 19)]
        write(d / "u.genre", "".join(f"{n}|{i}\n" for i, n in enumerate(names)))
    return d


def test_ml100k_standard_genres(tmp_path: Path) -> None:
    raw = read_dataset("ml-100k", ml100k_dir(tmp_path, with_genre_file=False))
    check_contract(raw)
    items = raw.items.set_index("item")
    assert items.loc["242", "genres"] == ["Comedy"]
    assert items.loc["302", "genres"] == ["Crime", "Thriller"]
    assert items.loc["303", "title"] == "Caf\u00e9 (1997)"  # latin-1 decoded
    assert raw.interactions["timestamp"].tolist() == [881250949, 891717742]


def test_ml100k_genre_names_from_u_genre(tmp_path: Path) -> None:
    raw = read_dataset("ml-100k", ml100k_dir(tmp_path, with_genre_file=True))
    assert raw.items.set_index("item").loc["242", "genres"] == ["Funny"]


def test_ml100k_wrong_field_count(tmp_path: Path) -> None:
    d = ml100k_dir(tmp_path, with_genre_file=False)
    write(d / "u.item", "1|Title|date||url|0|1\n")
    with pytest.raises(DataFormatError, match="u.item in .*expected 24 pipe-separated fields"):
        read_dataset("ml-100k", d)


# -- ml-1m --------------------------------------------------------------------------------------


def test_ml1m(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        d / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
        "5::Am\u00e9lie (2001)::Comedy|Romance\n",
        encoding="latin-1",
    )
    raw = read_dataset("ml-1m", d)
    check_contract(raw)
    items = raw.items.set_index("item")
    assert items.loc["661", "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert items.loc["661", "genres"] == ["Action", "Sci-Fi"]
    assert items.loc["5", "title"] == "Am\u00e9lie (2001)"
    assert raw.interactions["rating"].tolist() == [5.0, 3.0]


def test_ml1m_wrong_separator(tmp_path: Path) -> None:
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1,1193,5,978300760\n")
    write(d / "movies.dat", "1193::Title::Drama\n")
    with pytest.raises(DataFormatError, match="ratings.dat in .*expected 4 '::'-separated"):
        read_dataset("ml-1m", d)


# -- rechorus -----------------------------------------------------------------------------------


@pytest.fixture
def rechorus_dir(tmp_path: Path) -> Path:
    d = tmp_path / "Grocery"
    write(d / "train.csv", "user_id\titem_id\ttime\n1\t10\t5\n1\t11\t6\n2\t10\t7\n2\t12\t8\n")
    write(d / "dev.csv", "user_id\titem_id\ttime\tneg_items\n1\t12\t9\t[3, 4]\n2\t11\t9\t[1]\n")
    write(d / "test.csv", "user_id\titem_id\ttime\tneg_items\n1\t13\t10\t[3]\n2\t13\t10\t[1]\n")
    write(
        d / "item_meta.csv",
        "item_id\ttitle\ti_brand\tdescription\n10\tTea\tlipton\tgreen tea\n"
        "11\tCoffee\t\tdark roast\n",
    )
    return d


def test_rechorus_presplit_and_meta(rechorus_dir: Path) -> None:
    raw = read_dataset("rechorus", rechorus_dir, item_category="groceries")
    check_contract(raw)
    assert raw.presplit is not None and set(raw.presplit) == {"train", "dev", "test"}
    assert len(raw.presplit["train"]) == 4 and len(raw.presplit["dev"]) == 2
    assert list(raw.presplit["dev"].columns) == ["user", "item", "timestamp", "rating"]
    assert len(raw.interactions) == 8 and raw.interactions["rating"].isna().all()
    items = raw.items.set_index("item")
    assert items.loc["10", "title"] == "Tea"
    assert items.loc["10", "tags"] == ["brand_lipton"]  # i_ columns are features
    assert items.loc["11", "tags"] == []
    assert items.loc["10", "text"] == "green tea"
    assert raw.item_category == "groceries"


def test_rechorus_missing_column(rechorus_dir: Path) -> None:
    write(rechorus_dir / "test.csv", "user_id\titem\ttime\n1\t13\t10\n")
    with pytest.raises(
        DataFormatError, match="test.csv in .*expected columns user_id,item_id,time"
    ):
        read_dataset("rechorus", rechorus_dir)


# -- generic ------------------------------------------------------------------------------------


def test_generic_with_column_options_and_dates(tmp_path: Path) -> None:
    write(
        tmp_path / "log.tsv",
        "uid\tsong\twhen\na\ts1\t2020-01-01T00:00:00Z\nb\ts2\t2020-01-01T00:01:00Z\n",
    )
    write(tmp_path / "songs.tsv", "sid\ttitle\ttags\tartist\ns1\tSong One\trock|indie\tThe Band\n")
    raw = read_dataset(
        "generic",
        tmp_path,
        interactions_file="log.tsv",
        items_file="songs.tsv",
        user_column="uid",
        item_column="song",
        timestamp_column="when",
        item_id_column="sid",
        sep="\t",
        name="songs",
    )
    check_contract(raw)
    assert raw.name == "songs"
    assert raw.interactions["timestamp"].tolist() == [1577836800, 1577836860]
    assert raw.interactions["rating"].isna().all()
    items = raw.items.set_index("item")
    assert items.loc["s1", "tags"] == ["rock", "indie"]
    assert items.loc["s1", "text"] == "The Band"


def test_generic_missing_columns(tmp_path: Path) -> None:
    write(tmp_path / "interactions.csv", "user,item\n1,2\n")
    with pytest.raises(
        DataFormatError, match="expected columns user,item,timestamp, found user,item"
    ):
        read_dataset("generic", tmp_path / "interactions.csv")


def test_generic_empty_or_bad_timestamps(tmp_path: Path) -> None:
    write(tmp_path / "interactions.csv", "user,item,timestamp\n1,2,5\n1,3,\n")
    with pytest.raises(DataFormatError, match="timestamp is empty on 1 rows .*data row 2"):
        read_dataset("generic", tmp_path)
    write(tmp_path / "interactions.csv", "user,item,timestamp\n1,2,5\n1,3,soon\n")
    with pytest.raises(DataFormatError, match="Unix seconds or ISO 8601 dates; 'soon' is neither"):
        read_dataset("generic", tmp_path)


def test_generic_round_trip_of_synthetic_data(tmp_path: Path) -> None:
    raw, _ = generate(SyntheticConfig(n_users=50, n_items=80, mean_history=10, seed=3))
    write_generic_csv(raw, tmp_path / "syn")
    back = read_dataset("generic", tmp_path / "syn", name=raw.name)
    check_contract(back)
    pd.testing.assert_frame_equal(back.interactions, raw.interactions)
    pd.testing.assert_frame_equal(back.items, raw.items)


def test_generic_items_csv_may_name_its_id_column_id(tmp_path: Path) -> None:
    """The README's layout: an items CSV with an ``id`` column (``item`` is accepted too)."""
    write(tmp_path / "interactions.csv", "user,item,timestamp\na,i1,5\nb,i2,6\n")
    write(tmp_path / "items.csv", "id,title,genres\ni1,First,Drama|Comedy\ni2,Second,\n")
    raw = read_dataset("generic", tmp_path)
    check_contract(raw)
    items = raw.items.set_index("item")
    assert items.loc["i1", "title"] == "First"
    assert items.loc["i1", "genres"] == ["Drama", "Comedy"]


def test_generic_items_csv_without_an_id_column_names_both(tmp_path: Path) -> None:
    write(tmp_path / "interactions.csv", "user,item,timestamp\na,i1,5\n")
    write(tmp_path / "items.csv", "movie,title\ni1,First\n")
    with pytest.raises(DataFormatError, match="expected an id column named item or id"):
        read_dataset("generic", tmp_path)
