"""RawDataset -> Dataset: positive interactions, iterative k-core, chronological leave-one-out.

docs/method.md §1.1 and the paper §5.1 ("positive interactions correspond to ratings equal to or
above 4 ... a 5-core filter, and a leave-one-out split", ReChorus' built-in processing).
Deterministic: no randomness anywhere, every tie is broken by the original ids.

Id order rule (used for the dense ids and for timestamp ties): original ids compare as integers
when every id of that kind is an integer ("2" < "10"), otherwise as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from worker.data.dataset import Dataset, RawDataset

_INTEGER = re.compile(r"^[+-]?\d{1,18}$")  # fits in int64: compared numerically
MIN_SEQUENCE = 3  # leave-one-out needs at least one train, one dev and one test item
SIDES = ("train", "dev", "test")


@dataclass(frozen=True)
class PrepareConfig:
    rating_threshold: float | None = 4.0  # positive = rating >= this; None keeps every row
    k_core: int = 5  # users and items with fewer interactions are dropped, iteratively


def ordered_ids(ids: pd.Series | np.ndarray | list[str]) -> list[str]:
    """The distinct ids in ascending order: numerically if all are integers, else as strings."""
    unique = pd.unique(pd.Series(ids, dtype=str))
    if all(_INTEGER.match(s) for s in unique):
        return sorted(unique, key=lambda s: (int(s), s))  # "7" and "007": numeric, then text
    return sorted(unique)


def _codes(ids: pd.Series, order: list[str]) -> np.ndarray:
    """[N] int64 position of each id in ``order`` (-1 when absent)."""
    return pd.Categorical(ids.astype(str), categories=order).codes.astype(np.int64)


def _check_interactions(frame: pd.DataFrame, where: str) -> None:
    missing = [c for c in ("user", "item", "timestamp") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{where}: interactions need columns user, item, timestamp (and rating); "
            f"missing {', '.join(missing)}, found {', '.join(map(str, frame.columns))}"
        )


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core (docs/method.md §1.1): each round drops, together, the users and the items
    with fewer than ``k`` interactions in the current rows; repeat until a round drops nothing.

    users, items: [N] int64 ids (dense enough for bincount). Returns the [N] bool mask of kept
    rows and the number of rounds, counting the final round that found nothing to drop (so
    ml-latest-small, which drops rows in 3 rounds, takes 4).
    """
    keep = np.ones(len(users), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        u, i = users[keep], items[keep]
        user_counts = np.bincount(u, minlength=int(users.max(initial=-1)) + 1)
        item_counts = np.bincount(i, minlength=int(items.max(initial=-1)) + 1)
        ok = (user_counts[u] >= k) & (item_counts[i] >= k)
        if ok.all():
            return keep, rounds
        keep[np.flatnonzero(keep)[~ok]] = False


def preprocess(
    raw: RawDataset,
    config: PrepareConfig | None = None,
    log: Callable[[str], None] | None = print,
) -> Dataset:
    """Prepare ``raw`` for every later stage (docs/method.md §1.1).

    Positive interactions (rating >= threshold; rows without a rating are kept), duplicate
    (user, item) pairs dropped keeping the earliest, iterative k-core, each user's items in
    (timestamp, original item id) order, dense ids in original-id order. Each sequence ends
    with the dev item then the test item (leave-one-out). Presplit data (``raw.presplit``,
    ReChorus) keeps its split: train items in time order, then the dev item, then the test item;
    it is neither filtered nor k-cored again.
    """
    config = config or PrepareConfig()
    _check_interactions(raw.interactions, raw.name)
    user_order = ordered_ids(raw.interactions["user"])
    item_order = ordered_ids(raw.interactions["item"])
    if raw.presplit is not None:
        users, items, times, stats = _presplit(raw, user_order, item_order)
    else:
        users, items, times, stats = _filtered(raw, config, user_order, item_order)

    # Dense ids: the ranks are already in original-id order, so unique() keeps that order.
    user_ranks, users = np.unique(users, return_inverse=True)
    item_ranks, items = np.unique(items, return_inverse=True)
    user_ids = [user_order[r] for r in user_ranks]
    item_ids = [item_order[r] for r in item_ranks]

    # Rows are grouped by user (ascending) and ordered within a user, so a split suffices.
    bounds = np.flatnonzero(np.diff(users)) + 1
    sequences = [s.astype(np.int64) for s in np.split(items, bounds)]
    timestamps = [t.astype(np.int64) for t in np.split(times, bounds)]
    lengths = np.array([len(s) for s in sequences])
    if len(lengths) and lengths.min() < MIN_SEQUENCE:
        short = int((lengths < MIN_SEQUENCE).sum())
        raise ValueError(
            f"{raw.name}: {short} users have fewer than {MIN_SEQUENCE} positive interactions "
            f"after filtering (k_core={config.k_core}); leave-one-out needs a train, a dev and "
            f"a test item: use k_core >= {MIN_SEQUENCE}"
        )

    title, genres, tags, text = _item_metadata(raw, item_ids)
    item_text = [
        " | ".join(p for p in (t, ", ".join(g), ", ".join(tg), x) if p)
        for t, g, tg, x in zip(title, genres, tags, text, strict=True)
    ]
    n_users = len(user_ids)
    stats.update(
        users=n_users,
        items=len(item_ids),
        interactions=int(lengths.sum()),
        train=int(lengths.sum()) - 2 * n_users,
        dev=n_users,
        test=n_users,
        items_without_metadata=sum(1 for t in item_text if not t),
    )
    if log is not None:
        log(_describe(raw.name, config, stats))
    return Dataset(
        name=raw.name,
        user_ids=user_ids,
        item_ids=item_ids,
        sequences=sequences,
        timestamps=timestamps,
        item_title=title,
        item_genres=genres,
        item_tags=tags,
        item_text=item_text,
        item_category=raw.item_category,
        item_name=raw.item_name,
        stats=stats,
    )


def _filtered(
    raw: RawDataset, config: PrepareConfig, user_order: list[str], item_order: list[str]
) -> tuple:
    """Filter + k-core; returns user ranks, item ranks, timestamps (rows grouped by user in
    (timestamp, item) order) and the stats so far."""
    if config.k_core < 0:
        raise ValueError(f"k_core must be >= 0, got {config.k_core}")
    frame = raw.interactions
    stats: dict = {"raw_interactions": len(frame)}
    if config.rating_threshold is not None and "rating" in frame.columns:
        rating = frame["rating"].to_numpy(dtype=np.float64)
        frame = frame[np.isnan(rating) | (rating >= config.rating_threshold)]
    stats["positive_interactions"] = len(frame)

    users = _codes(frame["user"], user_order)
    items = _codes(frame["item"], item_order)
    times = frame["timestamp"].to_numpy(dtype=np.int64)

    order = np.lexsort((items, times, users))  # by user, then timestamp, then item id
    users, items, times = users[order], items[order], times[order]
    first = ~pd.DataFrame({"u": users, "i": items}).duplicated(keep="first").to_numpy()
    users, items, times = users[first], items[first], times[first]
    stats["distinct_interactions"] = len(users)
    if len(users) == 0:
        raise ValueError(
            f"{raw.name}: no positive interactions (rating_threshold={config.rating_threshold})"
        )

    keep, rounds = k_core(users, items, config.k_core)
    if not keep.any():
        raise ValueError(f"{raw.name}: the {config.k_core}-core filter left no interactions")
    stats["kcore_rounds"] = rounds
    return users[keep], items[keep], times[keep], stats


def _presplit(raw: RawDataset, user_order: list[str], item_order: list[str]) -> tuple:
    """Keep a ReChorus split: per user, train items by (time, item), then dev, then test."""
    assert raw.presplit is not None
    missing = [s for s in SIDES if s not in raw.presplit]
    if missing:
        raise ValueError(f"{raw.name}: presplit data lacks the {', '.join(missing)} side(s)")
    frames = []
    for side_index, side in enumerate(SIDES):
        frame = raw.presplit[side]
        _check_interactions(frame, f"{raw.name} ({side})")
        frames.append(frame[["user", "item", "timestamp"]].assign(side=side_index))
    frame = pd.concat(frames, ignore_index=True)

    for side_index, side in ((1, "dev"), (2, "test")):
        counts = frame[frame["side"] == side_index].groupby("user").size()
        counts = counts.reindex(pd.unique(frame["user"]), fill_value=0)
        wrong = counts[counts != 1]
        if len(wrong):
            examples = ", ".join(f"{u} ({n})" for u, n in wrong.head(5).items())
            raise ValueError(
                f"{raw.name}: every user needs exactly one {side} item; {len(wrong)} users "
                f"do not, e.g. user (count): {examples}"
            )
    train_users = set(frame.loc[frame["side"] == 0, "user"])
    no_train = [u for u in pd.unique(frame["user"]) if u not in train_users]
    if no_train:
        raise ValueError(
            f"{raw.name}: {len(no_train)} users have no train item, e.g. {no_train[:5]}"
        )

    u = _codes(frame["user"], user_order)
    i = _codes(frame["item"], item_order)
    if (u < 0).any() or (i < 0).any():
        raise ValueError(
            f"{raw.name}: presplit frames hold users or items missing from raw.interactions"
        )
    times = frame["timestamp"].to_numpy(dtype=np.int64)
    side = frame["side"].to_numpy()
    order = np.lexsort((i, times, side, u))
    stats: dict = {
        "raw_interactions": len(frame),
        "positive_interactions": len(frame),
        "distinct_interactions": len(frame),
        "kcore_rounds": 0,
        "presplit": True,
    }
    return u[order], i[order], times[order], stats


def _item_metadata(
    raw: RawDataset, item_ids: list[str]
) -> tuple[list[str], list[list[str]], list[list[str]], list[str]]:
    """Title, genres, tags, free text per kept item; items without a metadata row get empties."""
    meta = raw.items
    if len(meta) and "item" not in meta.columns:
        raise ValueError(f"{raw.name}: the items frame needs an 'item' column")
    duplicated = meta["item"][meta["item"].duplicated()] if len(meta) else pd.Series([])
    if len(duplicated):
        raise ValueError(
            f"{raw.name}: the items frame lists item {duplicated.iloc[0]!r} more than once"
        )
    rows = {str(k): i for i, k in enumerate(meta["item"])} if len(meta) else {}

    def column(name: str, empty: object) -> list[Any]:
        values = meta[name].tolist() if name in meta.columns else []
        out: list[Any] = []
        for item in item_ids:
            row = rows.get(item)
            value = values[row] if row is not None and values else empty
            if isinstance(empty, list):
                out.append(list(value) if isinstance(value, list | tuple | np.ndarray) else [])
            else:
                out.append("" if value is None or value != value else str(value).strip())
        return out

    return column("title", ""), column("genres", []), column("tags", []), column("text", "")


def _describe(name: str, config: PrepareConfig, stats: dict) -> str:
    if stats.get("presplit"):
        head = f"{name}: presplit data, split kept (no rating filter, no k-core)"
    else:
        threshold = (
            "all kept"
            if config.rating_threshold is None
            else f"rating >= {config.rating_threshold:g}"
        )
        head = (
            f"{name}: {stats['raw_interactions']:,} interactions -> "
            f"{stats['positive_interactions']:,} positive ({threshold}) -> "
            f"{stats['distinct_interactions']:,} distinct -> {config.k_core}-core in "
            f"{stats['kcore_rounds']} rounds"
        )
    return (
        f"{head}\n  {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions (train {stats['train']:,}, "
        f"dev {stats['dev']:,}, test {stats['test']:,}); "
        f"{stats['items_without_metadata']:,} items without metadata"
    )
