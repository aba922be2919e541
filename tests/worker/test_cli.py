"""The command line: --help helps, bad input says what to fix."""

from __future__ import annotations

from typer.testing import CliRunner

from worker.cli import app

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


def test_malformed_override_says_the_expected_form() -> None:
    result = runner.invoke(app, ["run", "--set", "epochs=3"])
    assert result.exit_code != 0
    assert "recommender.FIELD=VALUE" in result.output


def test_missing_dataset_names_the_file(tmp_path) -> None:
    args = ["run", "-r", "bprmf", "--data", str(tmp_path / "nowhere")]
    result = runner.invoke(app, args, env={"COLUMNS": "400"})  # no wrapping of the long path
    assert result.exit_code != 0
    assert "nowhere" in result.output and "does not exist" in result.output
