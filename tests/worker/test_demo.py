"""The demo's passes (worker/demo.py) with stand-in stages that write their files: every run is
published with its TF-IDF concepts before any LLM pass starts, the LLM labels land as a second
version, a second demo recomputes nothing, and a failing run says why while the others go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import worker.pipeline
from core import rundir
from core.progress import read_progress
from core.settings import Settings
from worker.demo import run_demo
from worker.run import STAGES, Run, RunConfig

Call = tuple[str, str, int]


def _fake_pipeline(calls: list[Call], fail: str | None = None) -> tuple:
    """Stages that write each file they must (so markers work) and record (run, stage,
    llm_latents); ``fail`` names a run whose train_sae raises."""

    def stage(name: str):
        def run(r: Run) -> None:
            calls.append((r.config.run_id, name, r.config.llm_latents))
            if name == "train_sae" and r.config.run_id == fail:
                raise RuntimeError("the SAE diverged (a stand-in failure)")
            for file in rundir.STAGE_OUTPUTS.get(name, ()):
                path = r.path(file)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps([name, r.config.llm_latents]))

        return run

    return tuple((name, stage(name)) for name in STAGES)


def _configs() -> list[RunConfig]:
    return [RunConfig(recommender=m, llm_latents=6, llm_null=2) for m in ("bprmf", "sasrec")]


def test_tfidf_versions_first_llm_last_and_a_second_demo_recomputes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    calls: list[Call] = []
    monkeypatch.setattr(worker.pipeline, "PIPELINE", _fake_pipeline(calls))
    run_demo(_configs(), settings, log=lambda _: None)
    b, s = "ml-latest-small-bprmf", "ml-latest-small-sasrec"
    publishes = [(run, n) for run, stage, n in calls if stage == "publish"]
    # both runs' TF-IDF versions (llm_latents 0) before either LLM version
    assert publishes == [(b, 0), (s, 0), (b, 6), (s, 6)]
    llm_pass = calls[calls.index((b, "publish", 0)) + 1 :]
    sasrec_tfidf_end = llm_pass.index((s, "publish", 0))
    # the LLM pass reruns explain_llm and what reads its concepts, nothing upstream
    assert [stage for run, stage, n in llm_pass[sasrec_tfidf_end + 1 :] if run == b] == [
        "explain_llm", "evaluate", "sweep", "publish",
    ]  # fmt: skip
    assert {p.run_id: p.state for p in read_progress(tmp_path)} == {b: "done", s: "done"}
    (bp, _) = read_progress(tmp_path)
    assert [st.label for st in bp.steps][-5:] == [
        "publish (TF-IDF concepts)", "explain_llm (LLM labels)", "evaluate (LLM labels)",
        "sweep (LLM labels)", "publish (LLM labels)",
    ]  # fmt: skip

    calls.clear()  # a second demo: publish only (as every pipeline run), no TF-IDF-only version
    run_demo(_configs(), settings, log=lambda _: None)
    assert calls == [(b, "publish", 6), (s, "publish", 6)]
    assert {p.run_id: p.state for p in read_progress(tmp_path)} == {b: "done", s: "done"}


def test_a_failing_run_says_why_and_the_other_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    calls: list[Call] = []
    b, s = "ml-latest-small-bprmf", "ml-latest-small-sasrec"
    monkeypatch.setattr(worker.pipeline, "PIPELINE", _fake_pipeline(calls, fail=b))
    with pytest.raises(RuntimeError, match="diverged"):
        run_demo(_configs(), settings, log=lambda _: None)
    assert [(run, n) for run, stage, n in calls if stage == "publish"] == [(s, 0), (s, 6)]
    progress = {p.run_id: p for p in read_progress(tmp_path)}
    assert progress[s].state == "done"
    failed = progress[b]
    assert failed.state == "failed" and failed.steps[failed.current].stage == "train_sae"
    assert failed.error == "RuntimeError: the SAE diverged (a stand-in failure)"


def test_ctrl_c_leaves_the_run_stopped_at_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or SIGTERM, which ``recsae demo-pipelines`` turns into it) mid-stage: the progress
    file says stopped at that step, and the demo ends there (no other run starts)."""
    settings = Settings(data_dir=tmp_path)
    calls: list[Call] = []
    pipeline = list(_fake_pipeline(calls))

    def interrupted(r: Run) -> None:
        raise KeyboardInterrupt

    pipeline[STAGES.index("record")] = ("record", interrupted)
    monkeypatch.setattr(worker.pipeline, "PIPELINE", tuple(pipeline))
    with pytest.raises(KeyboardInterrupt):
        run_demo(_configs(), settings, log=lambda _: None)
    progress = {p.run_id: p for p in read_progress(tmp_path)}
    b = progress["ml-latest-small-bprmf"]
    assert b.state == "stopped" and b.steps[b.current].stage == "record"
    assert b.error is not None and "stopped (Ctrl-C or SIGTERM)" in b.error
    assert progress["ml-latest-small-sasrec"].state == "queued"  # never started
    assert all(run == "ml-latest-small-bprmf" for run, _, _ in calls)


@pytest.mark.parametrize(
    ("env", "expected"), [({}, 600.0), ({"RECSAE_LLM_TIMEOUT_S": "900"}, 900.0)]
)
def test_the_demo_pipelines_wait_minutes_for_an_llm_answer(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: float
) -> None:
    """Background work, not a request: each LLM answer may take 10 minutes (or the configured
    RECSAE_LLM_TIMEOUT_S when larger), not the 60 s request default."""
    import signal

    from typer.testing import CliRunner

    import worker.demo
    from core.settings import get_settings
    from worker.cli import app

    seen: list[Settings] = []
    monkeypatch.setattr(
        worker.demo, "run_demo", lambda configs, settings, **_: seen.append(settings)
    )
    monkeypatch.delenv("RECSAE_LLM_TIMEOUT_S", raising=False)
    previous = signal.getsignal(signal.SIGTERM)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["demo-pipelines", "--llm-latents", "1"], env=env)
    finally:
        signal.signal(signal.SIGTERM, previous)
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen[0].llm_timeout_s == expected
