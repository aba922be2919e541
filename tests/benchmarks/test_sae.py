"""benchmarks/sae.py trains on a real run's probed vectors (never stand-ins): it reads the run's
probe.npz, says which, and stops with the command to make one when there is none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import sae
from core.settings import Settings
from worker.cases import DEV, TEST, TRAIN
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.pipeline import RunConfig, run_pipeline


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with one small BPRMF run, finished up to its probe."""
    root = tmp_path_factory.mktemp("sae-bench")
    raw, _ = generate(SyntheticConfig(n_users=150, n_items=50, n_tags=3, mean_history=15, seed=1))
    config = RunConfig(
        recommender="bprmf", dataset_format="generic",
        dataset_path=str(write_generic_csv(raw, root / "csv")), dataset_name="syn",
        recommender_overrides={"epochs": 2, "threads": 1},
    )  # fmt: skip
    stages = ("prepare", "train_recommender", "probe")
    run_pipeline(config, Settings(data_dir=root / "var"), stages=stages, log=lambda _: None)
    return root / "var"


def test_trains_on_the_runs_probed_vectors(probed: Path) -> None:
    out = sae.main(["--models", "bprmf", "--data-dir", str(probed), "--quick", "--max-epochs", "3"])
    r = out["models"]["bprmf"]
    probe = probed / "runs" / "syn-bprmf" / "probe.npz"
    assert r["source"] == {
        "run_id": "syn-bprmf", "file": str(probe), "recommender": "bprmf", "dataset": "syn",
    }  # fmt: skip
    with np.load(probe) as arrays:  # the split sizes, read straight from the file
        side, d = arrays["side"], arrays["reps"].shape[1]
    assert r["n"] == {
        "train": int((side == TRAIN).sum()), "dev": int((side == DEV).sum()),
        "test": int((side == TEST).sum()), "d": d,
    }  # fmt: skip
    assert r["sae"]["epochs"] <= 3 and r["config"]["max_epochs"] == 3
    assert r["sae"]["speedup_vs_theirs"] * 6000 == pytest.approx(r["sae"]["vectors_per_second"])
    assert out["published"]["file"] == "benchmarks/published.json"


def test_no_run_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"recsae run -r sasrec"):
        sae.main(["--models", "sasrec", "--data-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="has no probe.npz"):
        sae.main(["--models", "bprmf", "--data-dir", str(tmp_path), "--run", "nothing"])
