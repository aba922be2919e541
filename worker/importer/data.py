"""The interactions and the user representations of an import (docs/import.md): items known,
whole timestamps, a split that leaks nothing, three items per user; one representation per user
(at the last position) or one per position of a sequential model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from worker.data.dataset import Dataset
from worker.data.readers.imported import SIDES
from worker.importer.formats import MANIFEST, ImportRefused


def no_duplicates(values: list[str], where: str, what: str) -> None:
    seen: dict[str, int] = {}
    for row, value in enumerate(values, start=1):
        if value in seen:
            raise ImportRefused(
                f"{where}: data row {row}: {what} {value!r} repeats row {seen[value]}; each "
                "must appear once"
            )
        seen[value] = row


def check_interactions(
    frame: pd.DataFrame, where: str, known_items: set[str], split: str
) -> pd.DataFrame:
    unknown = ~frame["item"].isin(known_items)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: item {frame['item'].iloc[row - 1]!r} has no embedding "
            f"({int(unknown.sum())} rows like it); add its vector to items.embeddings/items.ids "
            "or drop its interactions"
        )
    stamps = pd.to_numeric(frame["timestamp"], errors="coerce")
    bad = stamps.isna() | (np.floor(stamps) != stamps)
    if bad.any():
        row = int(np.argmax(bad.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: timestamp {frame['timestamp'].iloc[row - 1]!r} is not a "
            "whole number; give Unix seconds (or any integer that orders each user's history)"
        )
    frame = frame.assign(timestamp=stamps.astype("int64"))
    if split == "column":
        sides = frame["split"].str.lower()
        wrong = ~sides.isin(SIDES)
        if wrong.any():
            row = int(np.argmax(wrong.to_numpy())) + 1
            raise ImportRefused(
                f"{where}: data row {row}: split {frame['split'].iloc[row - 1]!r}; use train, "
                "dev or test"
            )
        frame = frame.assign(split=sides)
        train = set(zip(frame["user"][sides == "train"], frame["item"][sides == "train"],
                        strict=True))  # fmt: skip
        for side in ("test", "dev"):
            rows = np.flatnonzero((sides == side).to_numpy())
            for r in rows:
                pair = (frame["user"].iloc[r], frame["item"].iloc[r])
                if pair in train:
                    raise ImportRefused(
                        f"{where}: data row {r + 1}: the {side} item {pair[1]!r} of user "
                        f"{pair[0]!r} is also one of their train rows: the split leaks {side} "
                        "items into training; drop the train row or retrain without it"
                    )
    counts = frame.groupby("user")["item"].nunique()
    short = counts[counts < 3]
    if len(short):
        user = short.index[0]
        row = int(np.argmax((frame["user"] == user).to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {user!r} has {int(short.iloc[0])} distinct items "
            f"({len(short)} users have fewer than 3); each user needs a train, a dev and a test "
            "item: drop those users (and their representations)"
        )
    return frame


def check_cases(
    cases: pd.DataFrame, where: str, dataset: Dataset, manifest: dict[str, Any]
) -> tuple[bool, np.ndarray]:
    """(sequential, positions): one case per user (positions: n_u - 1) or every position."""
    user_index = {u: i for i, u in enumerate(dataset.user_ids)}
    unknown = ~cases["user"].isin(user_index)
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {cases['user'].iloc[row - 1]!r} has no interactions; "
            "drop its representation or add its interactions"
        )
    lengths = np.array([len(s) for s in dataset.sequences], dtype=np.int64)
    idx = cases["user"].map(user_index).to_numpy(dtype=np.int64)
    once = pd.Series(idx).value_counts().max() == 1
    if "position" in cases.columns:
        pos = pd.to_numeric(cases["position"], errors="coerce")
        bad = pos.isna() | (np.floor(pos) != pos)
        if bad.any():
            row = int(np.argmax(bad.to_numpy())) + 1
            raise ImportRefused(f"{where}: data row {row}: position must be a whole number")
        positions = pos.to_numpy(dtype=np.int64)
    else:
        if not once:
            raise ImportRefused(
                f"{where}: users repeat but there is no position column; give each row its "
                "history length (position), or one row per user"
            )
        positions = lengths[idx] - 1
    out_of_range = (positions < 1) | (positions > lengths[idx] - 1)
    if out_of_range.any():
        row = int(np.argmax(out_of_range)) + 1
        u = idx[row - 1]
        raise ImportRefused(
            f"{where}: data row {row}: position {positions[row - 1]} for user "
            f"{dataset.user_ids[u]!r}, whose history has {lengths[u]} items; a position n is "
            f"the vector after the first n items, 1 .. {lengths[u] - 1}"
        )
    keys = pd.Series(idx * (int(lengths.max()) + 1) + positions)
    dup = keys.duplicated()
    if dup.any():
        row = int(np.argmax(dup.to_numpy())) + 1
        raise ImportRefused(
            f"{where}: data row {row}: user {cases['user'].iloc[row - 1]!r} at position "
            f"{positions[row - 1]} repeats an earlier row; one representation per (user, position)"
        )
    counts = np.bincount(idx, minlength=dataset.n_users)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ImportRefused(
            f"{where}: user {dataset.user_ids[missing[0]]!r} ({len(missing)} users) has no "
            "representation; every user of the interactions needs one"
        )
    sequential = bool(manifest.get("sequential", not once))
    if once:
        if "position" in cases.columns and (positions != lengths[idx] - 1).any():
            row = int(np.argmax(positions != lengths[idx] - 1)) + 1
            raise ImportRefused(
                f"{where}: data row {row}: one representation per user must be at the last "
                f"position (train + dev items, {lengths[idx[row - 1]] - 1} for this user), "
                f"got {positions[row - 1]}"
            )
        return False, positions
    if not sequential:
        raise ImportRefused(
            f"{MANIFEST}: sequential is false but {where} has several rows per user; give one "
            "per user, or say sequential: true"
        )
    incomplete = np.flatnonzero(counts != lengths - 1)
    if len(incomplete):
        u = incomplete[0]
        have = set(positions[idx == u].tolist())
        lack = sorted(set(range(1, lengths[u])) - have)[:5]
        raise ImportRefused(
            f"{where}: user {dataset.user_ids[u]!r} lacks positions {lack} (a sequential "
            f"import needs every position 1 .. n_u - 1; {len(incomplete)} users are incomplete); "
            "export them, or only each user's last position (then it imports as one vector per "
            "user)"
        )
    return True, positions


def rows_of(ids: list[str], wanted: list[str]) -> np.ndarray:
    row_of = {v: r for r, v in enumerate(ids)}
    return np.array([row_of[v] for v in wanted], dtype=np.int64)


def reps_at_test(
    dataset: Dataset, users: list[str], positions: np.ndarray, reps: np.ndarray
) -> np.ndarray:
    """[n_users, d'] each user's representation at the test position (n_u - 1)."""
    index = {u: i for i, u in enumerate(dataset.user_ids)}
    lengths = np.array([len(s) for s in dataset.sequences])
    out = np.zeros((dataset.n_users, reps.shape[1]), np.float32)
    for row, (user, n) in enumerate(zip(users, positions, strict=True)):
        u = index[user]
        if n == lengths[u] - 1:
            out[u] = reps[row]
    return out
