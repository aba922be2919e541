"""benchmarks/pipeline.py times only the stages it ran: a second run over the same data dir
reuses every finished stage and must say so, with no timing and no SAE speed of its own."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from benchmarks import common, pipeline
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.pipeline import STAGES

ALWAYS = ("publish",)  # run_pipeline reruns it every time


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, _ = generate(SyntheticConfig(n_users=150, n_items=50, n_tags=3, mean_history=15, seed=1))
    return write_generic_csv(raw, tmp_path_factory.mktemp("csv"))


def test_reused_stages_are_named_not_timed(
    tiny_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = functools.partial(
        common.run_demo, dataset_format="generic", dataset_path=str(tiny_csv),
        dataset_name="syn", sae_scale=1, recommender_overrides={"epochs": 2, "threads": 1},
        sae_overrides={"max_epochs": 3},
    )  # fmt: skip
    monkeypatch.setattr(pipeline, "run_demo", tiny)
    argv = ["--models", "bprmf", "--no-sweep", "--data-dir", str(tmp_path)]
    ran = list(STAGES)  # explain_llm and sweep too: asked for nothing, they finish at once

    first = pipeline.main(argv)
    published = json.loads(common.PUBLISHED.read_text())
    assert first["published"] == {
        "file": "benchmarks/published.json",
        "source": published["source"],
        "date": published["date"],
    }
    f = first["models"]["bprmf"]
    assert list(f["stages_ran"]) == ran and f["stages_reused"] == []
    assert f["ran_seconds"] == pytest.approx(sum(f["stages_ran"].values()))
    # the ratio is to the top of the authors' range, as the file gives it: [2000, 6000]
    assert f["sae_speedup_vs_theirs"] * 6000 == pytest.approx(f["sae_vectors_per_second"])
    assert f["their_ndcg@10"] == 0.0267

    second = pipeline.main(argv)["models"]["bprmf"]
    assert list(second["stages_ran"]) == list(ALWAYS)
    assert second["stages_reused"] == [s for s in ran if s not in ALWAYS]
    assert second["ran_seconds"] == pytest.approx(second["stages_ran"]["publish"])
    assert second["sae_vectors_per_second"] is None and second["sae_speedup_vs_theirs"] is None
    assert second["ndcg@10"] == f["ndcg@10"]  # the same run, read back


def test_published_figures_need_source_and_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    undated = tmp_path / "published.json"
    undated.write_text(json.dumps({"source": "somewhere", "ndcg@10": {}}))
    monkeypatch.setattr(common, "PUBLISHED", undated)
    with pytest.raises(SystemExit, match="date"):
        common.published()
