"""Export a matrix-factorisation model trained by scikit-learn for ``recsae import``
(docs/import.md, recipe "a matrix-factorisation library").

TruncatedSVD on the binary user x item matrix of the training interactions: a user's vector is
x_u = h_u V (its training row projected on the components), an item's embedding is its column
of V, score(u, i) = x_u · v_i. The split is the importer's leave-one-out rule: each user's items
by (timestamp, item id), the last is test, the one before dev. The script states the model's own
test NDCG@10 (computed here, by full ranking) and writes its own top 10 for 100 users, so the
importer can check that the exported vectors are the model.

    python examples/svd_export.py --interactions data/ml-latest-small/ratings.csv \\
        --user-col userId --item-col movieId --min-rating 4 \\
        --items data/ml-latest-small/movies.csv --items-id-col movieId --out /tmp/svd-import
    recsae import /tmp/svd-import --name ml-svd
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.decomposition import TruncatedSVD

_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


def _order_key(ids: pd.Series) -> pd.Series:
    """Item ids compare as integers when all are integers, else as strings (docs/import.md)."""
    if ids.map(lambda s: bool(_INTEGER.match(s))).all():
        return ids.astype("int64")
    return ids


def export_svd(
    interactions: pd.DataFrame,
    out: Path,
    d: int = 64,
    seed: int = 0,
    items: pd.DataFrame | None = None,
    ranking_users: int = 100,
    description: str | None = None,
) -> dict[str, float]:
    """``interactions``: user, item, timestamp (strings, strings, integers). Writes the import
    directory ``out``; returns the model's test metrics."""
    out.mkdir(parents=True, exist_ok=True)
    frame = interactions[["user", "item", "timestamp"]].astype({"user": str, "item": str})
    frame = frame.assign(key=_order_key(frame["item"]))
    frame = frame.sort_values(["user", "timestamp", "key"], kind="stable")
    frame = frame.drop_duplicates(["user", "item"], keep="first")
    sizes = frame.groupby("user")["item"].transform("size")
    frame = frame[sizes >= 3].drop(columns="key")  # a train, a dev and a test item each
    position = frame.groupby("user").cumcount(ascending=False)  # 0: test, 1: dev
    users = sorted(frame["user"].unique())
    item_ids = list(pd.unique(frame["item"]))
    u_of = {u: i for i, u in enumerate(users)}
    i_of = {it: i for i, it in enumerate(item_ids)}
    rows = frame["user"].map(u_of).to_numpy()
    cols = frame["item"].map(i_of).to_numpy()

    train = (position >= 2).to_numpy()
    shape = (len(users), len(item_ids))
    x_train = csr_matrix((np.ones(train.sum()), (rows[train], cols[train])), shape=shape)
    svd = TruncatedSVD(n_components=d, random_state=seed).fit(x_train)
    item_emb = svd.components_.T  # [I, d]
    user_reps = svd.transform(x_train)  # [U, d] = h_u V
    scores = user_reps @ item_emb.T  # the model's own scores, float64

    # The model's own evaluation: full ranking of the test item, train and dev items masked,
    # ties counted against the target (rank = #other items scoring >= it).
    seen = (position >= 1).to_numpy()
    masked = scores.copy()
    masked[rows[seen], cols[seen]] = -np.inf
    test = (position == 0).to_numpy()
    target = np.empty(len(users), np.int64)
    target[rows[test]] = cols[test]
    t_score = masked[np.arange(len(users)), target]
    rank = (masked >= t_score[:, None]).sum(1) - 1
    ndcg = np.where(rank < 10, 1 / np.log2(rank + 2), 0.0).mean()
    hr = (rank < 10).mean()

    # The model's own top 10 at the test position (train and dev items are the history).
    top = np.argsort(-masked[:ranking_users], axis=1, kind="stable")[:, :10]
    ranking = pd.DataFrame(
        [(users[u], r + 1, item_ids[i]) for u in range(len(top)) for r, i in enumerate(top[u])],
        columns=["user", "rank", "item"],
    )

    np.save(out / "items.npy", item_emb.astype(np.float32))
    pd.DataFrame({"item": item_ids}).to_csv(out / "item_ids.csv", index=False)
    np.save(out / "users.npy", user_reps.astype(np.float32))
    pd.DataFrame({"user": users}).to_csv(out / "user_ids.csv", index=False)
    frame.to_csv(out / "interactions.csv", index=False)
    ranking.to_csv(out / "ranking.csv", index=False)
    manifest = {
        "description": description
        or f"scikit-learn TruncatedSVD, {d} components, on the binary training matrix",
        "items": {"embeddings": "items.npy", "ids": "item_ids.csv"},
        "users": {"representations": "users.npy", "ids": "user_ids.csv"},
        "interactions": "interactions.csv",
        "split": "leave-one-out",
        "ranking": "ranking.csv",
        "metrics": {"test": {"ndcg@10": float(ndcg), "hr@10": float(hr)}},
    }
    if items is not None:
        items.to_csv(out / "items.csv", index=False)
        manifest["item_metadata"] = "items.csv"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"ndcg@10": float(ndcg), "hr@10": float(hr)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=Path, required=True)
    parser.add_argument("--user-col", default="user")
    parser.add_argument("--item-col", default="item")
    parser.add_argument("--time-col", default="timestamp")
    parser.add_argument("--rating-col", default="rating")
    parser.add_argument("--min-rating", type=float, default=None)
    parser.add_argument("--items", type=Path, default=None)
    parser.add_argument("--items-id-col", default="item")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    raw = pd.read_csv(args.interactions, dtype={args.user_col: str, args.item_col: str})
    if args.min_rating is not None:
        raw = raw[raw[args.rating_col] >= args.min_rating]
    interactions = pd.DataFrame(
        {"user": raw[args.user_col], "item": raw[args.item_col], "timestamp": raw[args.time_col]}
    )
    items = None
    if args.items is not None:
        items = pd.read_csv(args.items, dtype=str).rename(columns={args.items_id_col: "item"})
    metrics = export_svd(interactions, args.out, args.dim, args.seed, items)
    print(json.dumps({"out": str(args.out), **metrics}))


if __name__ == "__main__":
    main()
