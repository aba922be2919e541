"""The command line: --help helps, bad input says what to fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

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
