"""preprocess (docs/method.md §1.1): the demo-data check and hand-computed tiny frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from worker.data.dataset import Dataset, RawDataset
from worker.data.preprocess import PrepareConfig, k_core, ordered_ids, preprocess
from worker.data.readers import read_dataset

DEMO = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small"


def raw_from(rows: list[tuple], items: pd.DataFrame | None = None, **kwargs) -> RawDataset:
    """rows: (user, item, timestamp[, rating])."""
    frame = pd.DataFrame(
        [(str(r[0]), str(r[1]), int(r[2]), float(r[3]) if len(r) > 3 else np.nan) for r in rows],
        columns=["user", "item", "timestamp", "rating"],
    )
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    if items is None:
        items = pd.DataFrame(columns=["item", "title", "genres", "tags", "text"])
    return RawDataset("tiny", frame, items, **kwargs)


def original(ds: Dataset, u: int) -> list[str]:
    return [ds.item_ids[i] for i in ds.sequences[u]]


def test_demo_data_must_pass_check() -> None:
    """docs/method.md §1.1: 601 users, 1,955 items, 41,227 interactions (40,025/601/601), 4
    rounds."""
    lines: list[str] = []
    ds = preprocess(read_dataset("movielens-latest", DEMO), log=lines.append)
    assert (ds.n_users, ds.n_items) == (601, 1955)
    assert {k: ds.stats[k] for k in ("interactions", "train", "dev", "test", "kcore_rounds")} == {
        "interactions": 41227,
        "train": 40025,
        "dev": 601,
        "test": 601,
        "kcore_rounds": 4,
    }
    assert sum(len(s) for s in ds.sequences) == 41227
    assert len(ds.train_pairs()) == 40025
    assert "601 users, 1,955 items, 41,227 interactions" in lines[0]
    # ids ascend numerically; every sequence is in time order
    assert [int(x) for x in ds.user_ids] == sorted(int(x) for x in ds.user_ids)
    assert [int(x) for x in ds.item_ids] == sorted(int(x) for x in ds.item_ids)
    assert all(np.all(np.diff(t) >= 0) for t in ds.timestamps)
    toy = ds.item_ids.index("1")
    assert ds.item_text[toy].startswith("Toy Story (1995) | Adventure, Animation, Children")


# users 1..3 rate items 9, 10, 100; user 4 reaches item 7 (seen once); user 5 has two rows.
KCORE_ROWS = [
    (1, 9, 1), (1, 10, 2), (1, 100, 3),
    (2, 9, 1), (2, 10, 2), (2, 100, 3),
    (3, 9, 1), (3, 10, 2), (3, 100, 3),
    (4, 9, 1), (4, 10, 2), (4, 7, 3),
    (5, 100, 1), (5, 8, 2),
]  # fmt: skip


def test_kcore_needs_three_rounds() -> None:
    # Round 1 drops user 5 (2 rows) and items 7, 8 (1 row each), together; user 4 still has 3
    # rows then. Round 2 drops user 4 (now 2 rows). Round 3 finds nothing: 3 rounds.
    ds = preprocess(raw_from(KCORE_ROWS), PrepareConfig(k_core=3), log=None)
    assert ds.user_ids == ["1", "2", "3"]
    assert ds.item_ids == ["9", "10", "100"]  # numeric order, not "10" < "100" < "9"
    assert ds.stats["kcore_rounds"] == 3
    assert ds.stats["interactions"] == 9


def test_kcore_function_drops_users_and_items_together() -> None:
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 0, 1, 3, 0, 1])
    # k=3: items 2 and 3 (1 row) and user 2 (2 rows) go in round 1; then users 0, 1 have 2 rows
    # and round 2 drops everything; round 3 finds nothing to drop.
    keep, rounds = k_core(users, items, 3)
    assert not keep.any() and rounds == 3
    keep, rounds = k_core(users, items, 2)
    # round 1 drops items 2, 3; users 0,1,2 keep 2 rows each; items 0, 1 have 3: done in 2.
    assert keep.tolist() == [True, True, False, True, True, False, True, True] and rounds == 2


def test_tie_on_timestamp_breaks_by_item_id_numerically_and_leave_one_out() -> None:
    rows = [(1, 100, 5), (1, 9, 5), (1, 10, 1), (1, 20, 7)]
    ds = preprocess(raw_from(rows), PrepareConfig(k_core=0), log=None)
    assert original(ds, 0) == ["10", "9", "100", "20"]
    assert ds.timestamps[0].tolist() == [1, 5, 5, 7]
    assert [ds.item_ids[i] for i in ds.train_items(0)] == ["10", "9"]
    assert ds.item_ids[ds.dev_item(0)] == "100"
    assert ds.item_ids[ds.test_item(0)] == "20"
    assert ds.stats["train"] == 2 and ds.stats["dev"] == 1 and ds.stats["test"] == 1


def test_string_ids_compare_as_strings() -> None:
    rows = [("u", "b10", 5), ("u", "b9", 5), ("u", "a", 9)]
    ds = preprocess(raw_from(rows), PrepareConfig(k_core=0), log=None)
    assert original(ds, 0) == ["b10", "b9", "a"]
    assert ds.item_ids == ["a", "b10", "b9"]
    assert ordered_ids(["10", "9", "x"]) == ["10", "9", "x"]
    assert ordered_ids(["10", "9", "-1"]) == ["-1", "9", "10"]


def test_positive_filter_and_duplicates() -> None:
    rows = [
        (1, 1, 10, 5.0), (1, 2, 11, 3.0), (1, 3, 12, np.nan), (1, 4, 13, 4.0),
        (1, 1, 14, 4.5),  # duplicate of (1, 1): the earlier one is kept
        (1, 5, 3, 2.0), (1, 5, 20, 4.0),  # first is not positive: the later one stays
    ]  # fmt: skip
    ds = preprocess(raw_from(rows), PrepareConfig(k_core=0), log=None)
    assert original(ds, 0) == ["1", "3", "4", "5"]
    assert ds.timestamps[0].tolist() == [10, 12, 13, 20]
    assert ds.stats["positive_interactions"] == 5 and ds.stats["distinct_interactions"] == 4
    all_kept = preprocess(raw_from(rows), PrepareConfig(rating_threshold=None, k_core=0), log=None)
    assert original(all_kept, 0) == ["5", "1", "2", "3", "4"]


def test_too_short_histories_are_an_error() -> None:
    rows = [(1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 1, 1), (2, 2, 2), (3, 1, 1), (3, 2, 2), (3, 3, 3)]
    with pytest.raises(ValueError, match="1 users have fewer than 3 .*k_core >= 3"):
        preprocess(raw_from(rows), PrepareConfig(k_core=2), log=None)
    with pytest.raises(ValueError, match="left no interactions"):
        preprocess(raw_from(rows), PrepareConfig(k_core=4), log=None)


def test_item_text_and_missing_metadata() -> None:
    items = pd.DataFrame(
        {
            "item": ["1", "2"],
            "title": ["Heat (1995)", "Quiet"],
            "genres": [["Action", "Crime"], []],
            "tags": [["pacino", "heist"], []],
            "text": ["", "a calm film"],
        }
    )
    rows = [(1, 1, 1), (1, 2, 2), (1, 3, 3)]
    ds = preprocess(raw_from(rows, items), PrepareConfig(k_core=0), log=None)
    assert ds.item_text == [
        "Heat (1995) | Action, Crime | pacino, heist",
        "Quiet | a calm film",
        "",
    ]
    assert ds.item_genres[0] == ["Action", "Crime"] and ds.item_tags[2] == []
    assert ds.stats["items_without_metadata"] == 1


def test_deterministic_under_row_order_and_persisted(tmp_path: Path) -> None:
    raw = raw_from(KCORE_ROWS)
    shuffled = RawDataset("tiny", raw.interactions.sample(frac=1.0, random_state=1), raw.items)
    a = preprocess(raw, PrepareConfig(k_core=3), log=None)
    b = preprocess(shuffled, PrepareConfig(k_core=3), log=None)
    assert [s.tolist() for s in a.sequences] == [s.tolist() for s in b.sequences]
    a.save(tmp_path / "ds")
    c = Dataset.load(tmp_path / "ds")
    assert [s.tolist() for s in c.sequences] == [s.tolist() for s in a.sequences]
    assert c.stats == a.stats and c.item_ids == a.item_ids


def presplit_raw(dev_rows: list[tuple]) -> RawDataset:
    def frame(rows: list[tuple]) -> pd.DataFrame:
        return raw_from(rows).interactions

    splits = {
        "train": frame([(1, 5, 3), (1, 4, 1), (2, 4, 2)]),
        "dev": frame(dev_rows),
        "test": frame([(1, 7, 9), (2, 5, 9)]),
    }
    return RawDataset(
        "rc", pd.concat(list(splits.values()), ignore_index=True), pd.DataFrame(), presplit=splits
    )


def test_presplit_keeps_the_split() -> None:
    # user 1's dev item is older than a train item: the split wins over time order.
    ds = preprocess(presplit_raw([(1, 6, 2), (2, 6, 8)]), PrepareConfig(k_core=5), log=None)
    assert original(ds, 0) == ["4", "5", "6", "7"]
    assert original(ds, 1) == ["4", "6", "5"]
    assert ds.stats["kcore_rounds"] == 0 and ds.stats["train"] == 3


def test_presplit_needs_one_dev_item_per_user() -> None:
    with pytest.raises(ValueError, match="exactly one dev item; 1 users do not, e.g.*2 \\(0\\)"):
        preprocess(presplit_raw([(1, 6, 2)]), log=None)
    with pytest.raises(ValueError, match="exactly one dev item.*1 \\(2\\)"):
        preprocess(presplit_raw([(1, 6, 2), (1, 7, 3), (2, 6, 8)]), log=None)
