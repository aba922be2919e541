"""A changed run config recomputes exactly the stages that read the changed fields."""

from __future__ import annotations

import pytest

from core.settings import Settings
from worker.pipeline import STAGES, Run, RunConfig, run_pipeline


def _all_done(run: Run) -> None:
    for name in STAGES:
        run.mark_done(name, 1.0)


@pytest.mark.parametrize(
    ("change", "first_stale"),
    [
        ({"sae_k": 4}, "train_sae"),
        ({"seed": 1}, "prepare"),
        ({"recommender_overrides": {"epochs": 3}}, "train_recommender"),
        ({"llm_latents": 5}, "explain_llm"),
        ({"tfidf_title_words": True}, "interpret"),
        ({"llm_null": 3}, "explain_llm"),
        ({"sweep": True}, "sweep"),
    ],
)
def test_change_invalidates_from_the_first_reader(tmp_path, change, first_stale) -> None:
    settings = Settings(data_dir=tmp_path)
    _all_done(Run(RunConfig(recommender="bprmf"), settings, log=lambda _: None))
    run = Run(RunConfig(recommender="bprmf", **change), settings, log=lambda _: None)
    first = STAGES.index(first_stale)
    assert [run.done(s) for s in STAGES] == [i < first for i in range(len(STAGES))]


def test_unchanged_config_keeps_every_stage(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    _all_done(Run(RunConfig(recommender="bprmf"), settings, log=lambda _: None))
    run = Run(RunConfig(recommender="bprmf"), settings, log=lambda _: None)
    assert all(run.done(s) for s in STAGES)


def test_unknown_stage_is_refused_with_the_list(tmp_path) -> None:
    with pytest.raises(ValueError, match="train_sae"):
        run_pipeline(RunConfig(), Settings(data_dir=tmp_path), stages=("trian_sae",))
