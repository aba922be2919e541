"""The command line: --help helps, bad input says what to fix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import typer
from typer.testing import CliRunner

from core.net import free_port
from core.settings import REPO_ROOT
from worker.cli import _run_or_explain, app
from worker.errors import ConfigError

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "demo", "serve", "llm-server"):
        assert command in result.output


def test_run_help_lists_stages_and_formats() -> None:
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    assert "train_sae" in result.output and "movielens-latest" in result.output


def test_unknown_recommender_is_named() -> None:
    result = runner.invoke(app, ["run", "-r", "nosuchmodel"])
    assert result.exit_code != 0
    assert "nosuchmodel" in result.output and "sasrec" in result.output


def test_a_baseline_is_refused_as_a_model_to_probe() -> None:
    result = runner.invoke(app, ["run", "-r", "mostpop"])
    assert result.exit_code != 0
    assert "baseline" in result.output and "sasrec" in result.output


def test_help_imports_neither_torch_nor_the_pipeline() -> None:
    """`recsae --help` and `recsae serve` stay fast: the heavy modules load in the commands."""
    probe = (
        "import sys, worker.cli; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'worker.pipeline', 'backend')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_malformed_override_says_the_expected_form() -> None:
    result = runner.invoke(app, ["run", "--set", "epochs=3"])
    assert result.exit_code != 0
    assert "recommender.FIELD=VALUE" in result.output


def test_missing_dataset_names_the_file(tmp_path) -> None:
    args = ["run", "-r", "bprmf", "--data", str(tmp_path / "nowhere")]
    result = runner.invoke(app, args, env={"COLUMNS": "400"})  # no wrapping of the long path
    assert result.exit_code != 0
    assert "nowhere" in result.output and "does not exist" in result.output


def test_unknown_config_field_is_refused_before_any_stage_runs() -> None:
    result = runner.invoke(app, ["run", "-r", "bprmf", "--set", "recommender.n_interests=3"])
    assert result.exit_code != 0
    assert "n_interests" in result.output and "bprmf" in result.output
    result = runner.invoke(app, ["run", "-r", "bprmf", "--set", "sae.nosuch=3"])
    assert result.exit_code != 0
    assert "nosuch" in result.output


def test_user_errors_print_one_line_and_bugs_keep_their_traceback() -> None:
    def user_error() -> None:
        raise ConfigError("unknown stage(s) ['trian_sae']")

    def bug() -> None:
        raise KeyError("a real bug")

    with pytest.raises(typer.Exit):
        _run_or_explain(user_error)
    with pytest.raises(KeyError, match="a real bug"):
        _run_or_explain(bug)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_runs_the_backend_and_stops_with_us(tmp_path, sig: signal.Signals) -> None:
    """`recsae serve` starts the backend by its import string; Ctrl-C or `docker stop` sent to
    the command alone stops the server too."""
    port = free_port()
    env = {**os.environ, "RECSAE_DATA_DIR": str(tmp_path)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "serve", "--port", str(port)], cwd=REPO_ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/index.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert cli.poll() is None, "recsae serve exited before answering"
            assert time.monotonic() < deadline, "the explorer did not answer within 60 s"
            time.sleep(0.2)
        cli.send_signal(sig)
        assert cli.wait(timeout=20) == 0
        with pytest.raises(httpx.TransportError):  # the server went with it
            httpx.get(f"http://127.0.0.1:{port}/index.json", timeout=2)
    finally:
        if cli.poll() is None:
            cli.kill()


def test_run_passes_the_tfidf_and_null_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Title words only when asked; the LLM null's size is a setting."""
    import worker.pipeline

    seen = []
    monkeypatch.setattr(worker.pipeline, "run_pipeline", lambda config, **_: seen.append(config))
    result = runner.invoke(app, ["run", "-r", "bprmf", "--tfidf-title-words", "--llm-null", "3"])
    assert result.exit_code == 0, result.output
    assert (seen[0].tfidf_title_words, seen[0].llm_null) == (True, 3)
    runner.invoke(app, ["run", "-r", "bprmf"])
    assert (seen[1].tfidf_title_words, seen[1].llm_null) == (False, 19)  # the 5% test needs 19
