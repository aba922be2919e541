"""The imported recommender checked against its source (docs/import.md): the source model's own
top 10 and the metrics it states, reproduced by scoring the imported vectors as the explorer
does (full ranking, each user's train and dev items masked)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from worker.cases import DEV, TEST
from worker.data.dataset import Dataset
from worker.importer.formats import ImportRefused

RANKING = "ranking.csv"  # the source model's top 10 (user, rank, item), normalised copy
RANKING_USERS = 100  # users whose top 10 is compared (docs/import.md)
TOP_N = 10
METRIC_TOLERANCE = 1e-3  # default |stated - reproduced| allowed for a stated metric


def check_ranking(frame: pd.DataFrame, where: str, dataset: Dataset) -> pd.DataFrame:
    users, items = set(dataset.user_ids), set(dataset.item_ids)
    for column, known in (("user", users), ("item", items)):
        bad = ~frame[column].isin(known)
        if bad.any():
            row = int(np.argmax(bad.to_numpy())) + 1
            raise ImportRefused(
                f"{where}: data row {row}: {column} {frame[column].iloc[row - 1]!r} is not in the "
                "interactions; rank only users and items the import has"
            )
    rank = pd.to_numeric(frame["rank"], errors="coerce")
    if rank.isna().any():
        row = int(np.argmax(rank.isna().to_numpy())) + 1
        raise ImportRefused(f"{where}: data row {row}: rank must be a number 1 .. {TOP_N}")
    frame = frame.assign(rank=rank.astype(int))
    sizes = frame.groupby("user", sort=False).size()
    if (sizes != TOP_N).any():
        user = sizes.index[(sizes != TOP_N).to_numpy()][0]
        raise ImportRefused(
            f"{where}: user {user!r} has {int(sizes[user])} rows; give the source model's top "
            f"{TOP_N} (ranks 1 .. {TOP_N}) for each user listed"
        )
    if len(sizes) < min(RANKING_USERS, dataset.n_users):
        raise ImportRefused(
            f"{where}: {len(sizes)} users ranked; give the top {TOP_N} of "
            f"{min(RANKING_USERS, dataset.n_users)} users (e.g. the first {RANKING_USERS})"
        )
    return frame


def ranking_check(
    item_emb: np.ndarray, test_reps: np.ndarray, dataset: Dataset, ranking: pd.DataFrame
) -> dict[str, Any]:
    """Our top 10 from the imported vectors against the source's, for the first 100 users of the
    ranking file: ``reproduced`` is the share whose top-10 set is the source's (an item swapped
    with one whose score ties the 10th within float32 rounding counts as the same), ``overlap``
    the mean share of shared items. History masked as the explorer does: train + dev items."""
    from worker.probe import top_items, user_vector_cases  # torch: imported when a check runs

    index = {u: i for i, u in enumerate(dataset.user_ids)}
    item_index = {it: i for i, it in enumerate(dataset.item_ids)}
    users = list(pd.unique(ranking["user"]))[:RANKING_USERS]
    rows = np.array([index[u] for u in users], dtype=np.int64)
    cases = user_vector_cases(dataset).subset(rows)
    ours = top_items(item_emb, test_reps[rows], dataset, cases, n=TOP_N)
    same, overlap, first = 0, [], None
    for k, user in enumerate(users):
        theirs = ranking[ranking["user"] == user].sort_values("rank")["item"].tolist()
        mine = [dataset.item_ids[i] for i in ours[k]]
        shared = len(set(theirs) & set(mine))
        overlap.append(shared / TOP_N)
        if shared == TOP_N or _tied_swap(item_emb, test_reps[rows[k]], theirs, mine, item_index):
            same += 1
        elif first is None:
            first = {"user": user, "theirs": theirs, "ours": mine}
    return {
        "reproduced": same / len(users),
        "overlap": float(np.mean(overlap)),
        "users": len(users),
        "first_mismatch": first,
    }


def _tied_swap(
    item_emb: np.ndarray, rep: np.ndarray, theirs: list[str], mine: list[str],
    item_index: dict[str, int],
) -> bool:  # fmt: skip
    """Whether every item in one list and not the other scores within float32 rounding of our
    10th score (a tie the two sides broke differently)."""
    scores = item_emb.astype(np.float64) @ rep.astype(np.float64)
    tenth = scores[item_index[mine[-1]]]
    tol = 1e-5 * max(1.0, float(np.abs(scores).max()))
    differing = set(theirs) ^ set(mine)
    return all(abs(scores[item_index[i]] - tenth) <= tol for i in differing)


def check_metrics(
    manifest: dict[str, Any], where: str, item_emb: np.ndarray, dataset: Dataset,
    users: list[str], positions: np.ndarray, reps: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Each metric the manifest states (``metrics: {"test": {"ndcg@10": ...}, "tolerance"}``)
    recomputed by full ranking (docs/method.md §1.2) from these vectors."""
    from worker.metrics.ranking import hit_ndcg
    from worker.probe import leave_one_out_cases, rank_targets

    stated = manifest.get("metrics") or {}
    if not isinstance(stated, dict):
        raise ImportRefused(f"{where}: metrics must be an object like {{'test': {{'ndcg@10': x}}}}")
    tolerance = float(stated.get("tolerance", METRIC_TOLERANCE))
    index = {u: i for i, u in enumerate(dataset.user_ids)}
    lengths = np.array([len(s) for s in dataset.sequences])
    out: dict[str, Any] = {"tolerance": tolerance}
    for side_name, side, offset in (("test", TEST, 1), ("dev", DEV, 2)):
        claims = stated.get(side_name)
        if not claims:
            continue
        at = np.zeros((dataset.n_users, reps.shape[1]), np.float32)
        found = np.zeros(dataset.n_users, bool)
        for row, (user, n) in enumerate(zip(users, positions, strict=True)):
            u = index[user]
            # one vector per user stands for every position; a sequential one for its own
            if n == lengths[u] - offset or (n == lengths[u] - 1 and not found[u]):
                at[u], found[u] = reps[row], True
        ours = hit_ndcg(rank_targets(item_emb, at, dataset, leave_one_out_cases(dataset, side)))
        for metric, value in claims.items():
            if metric not in ours:
                raise ImportRefused(f"{where}: metrics.{side_name}: unknown metric {metric!r}; "
                                    f"known: {sorted(ours)}")  # fmt: skip
            got = ours[metric]
            out[f"{side_name}.{metric}"] = {"stated": float(value), "reproduced": got}
            if not math.isclose(float(value), got, abs_tol=tolerance):
                raise ImportRefused(
                    f"{where}: metrics.{side_name}.{metric} states {float(value):.4f}; the "
                    f"vectors give {got:.4f} by full ranking with each user's other items masked "
                    f"(docs/method.md §1.2), beyond the tolerance {tolerance}. Check the split, "
                    "the masking of the source's evaluation (sampled negatives give higher "
                    "numbers), or correct the stated value"
                )
    return out


def read_ranking(source: Path) -> pd.DataFrame:
    frame = pd.read_csv(source / RANKING, dtype={"user": str, "item": str})
    return frame.assign(rank=frame["rank"].astype(int))
