"""Bring your own model, end to end (docs/import.md): a scikit-learn TruncatedSVD of the demo
data made here (examples/svd_export.py), imported with ``import_run`` (check, SAE, record,
interpret, evaluate, publish), and malformed copies of it, each of which must be refused with a
message and publish nothing. Last line: JSON with import_seconds, ranking_reproduced,
sae.fvu_over_pca, sae.dead_fraction, refusals_checked."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

from svd_export import export_svd  # noqa: E402

from core.settings import Settings  # noqa: E402
from worker.importer import ImportRefused, import_run  # noqa: E402
from worker.run import DEMO_DATA  # noqa: E402


def _edit_npy(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        np.save(d / name, fn(np.load(d / name)))

    return edit


def _edit_csv(name: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        fn(pd.read_csv(d / name, dtype=str)).to_csv(d / name, index=False)

    return edit


def _set(frame: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    frame.loc[row, column] = value
    return frame


def _nan(a: np.ndarray) -> np.ndarray:
    a[10, 3] = np.inf
    return a


def _metric(d: Path) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["metrics"]["test"]["ndcg@10"] += 0.01
    (d / "manifest.json").write_text(json.dumps(manifest))


def _ranking(d: Path) -> None:
    frame = pd.read_csv(d / "ranking.csv", dtype=str)
    frame.loc[0, "item"], frame.loc[9, "item"] = frame.loc[9, "item"], frame.loc[0, "item"]
    last = pd.read_csv(d / "item_ids.csv", dtype=str)["item"].iloc[-1]
    frame.loc[0, "item"] = last if last not in set(frame["item"][:10]) else frame.loc[0, "item"]
    frame.to_csv(d / "ranking.csv", index=False)


MALFORMED: dict[str, Callable[[Path], None]] = {
    "no manifest": lambda d: (d / "manifest.json").unlink(),
    "inf in an item embedding": _edit_npy("items.npy", _nan),
    "integer item embeddings": _edit_npy("items.npy", lambda a: a.astype(np.int64)),
    "one item id short": _edit_csv("item_ids.csv", lambda f: f.iloc[:-1]),
    "duplicate item id": _edit_csv("item_ids.csv", lambda f: _set(f, 5, "item", f.loc[2, "item"])),
    "item without embedding": _edit_csv(
        "interactions.csv", lambda f: _set(f, 4, "item", "no-such-item")
    ),
    "user vectors of another d": _edit_npy("users.npy", lambda a: a[:, :-1]),
    "user without a vector": lambda d: (
        _edit_npy("users.npy", lambda a: a[:-1])(d),
        _edit_csv("user_ids.csv", lambda f: f.iloc[:-1])(d),
    ),
    "ranking not reproduced": _ranking,
    "stated NDCG not reproduced": _metric,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="recsae-import-"))
    ratings = pd.read_csv(DEMO_DATA / "ratings.csv", dtype={"userId": str, "movieId": str})
    ratings = ratings[ratings["rating"] >= 4]
    interactions = pd.DataFrame(
        {"user": ratings["userId"], "item": ratings["movieId"], "timestamp": ratings["timestamp"]}
    )
    items = pd.read_csv(DEMO_DATA / "movies.csv", dtype=str).rename(columns={"movieId": "item"})
    export = root / "svd"
    stated = export_svd(interactions, export, d=64, seed=args.seed, items=items)

    refused = 0
    for name, mutate in MALFORMED.items():
        bad = root / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(export, bad)
        mutate(bad)
        settings = Settings(data_dir=root / "refused")
        try:
            import_run(bad, "refused", settings=settings, log=lambda _: None)
        except ImportRefused as err:
            published = (settings.runs_dir / "refused").exists()
            print(f"refused   {name:28s} {str(err)[:110]}")
            refused += int(not published)
        else:
            print(f"ACCEPTED  {name}")

    settings = Settings(data_dir=root / "var")
    start = time.perf_counter()
    run = import_run(export, "ml-latest-small-svd", settings=settings, seed=args.seed)
    seconds = time.perf_counter() - start
    rec = json.loads((run.dir / "recommender_report.json").read_text())
    sae = json.loads((run.dir / "sae_report.json").read_text())
    figures = {
        "import_seconds": round(seconds, 1),
        "ranking_reproduced": rec["imported"]["ranking_reproduced"],
        "ranking_users": rec["imported"]["ranking_users"],
        "test_ndcg@10": rec["test"]["ndcg@10"],
        "stated_test_ndcg@10": stated["ndcg@10"],
        "sae.fvu_test": sae["fvu_test"],
        "sae.pca_fvu_test": sae["pca_fvu_test"],
        "sae.fvu_over_pca": sae["fvu_test"] / sae["pca_fvu_test"],
        "sae.dead_fraction": sae["dead_fraction"],
        "sae.n_latents": sae["n_latents"],
        "refusals_checked": refused,
        "malformed_inputs": len(MALFORMED),
        "timings": run.timings(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
