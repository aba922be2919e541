"""``recsae run --device`` (issue 12 §6; docs/scaling.md): a device this machine cannot use is
refused before any stage runs, saying what to do; the device plumbing leaves CPU results alone."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tests.worker.test_sae import FAST, planted
from worker.cli import app
from worker.device import CPU, resolve_device, to_device
from worker.errors import ConfigError
from worker.sae.train import train_sae

runner = CliRunner()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_saying_what_to_do() -> None:
    with pytest.raises(ConfigError, match="sees no CUDA GPU.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["gpu0", "tpu", "cuda:x", "meta"])
def test_a_name_that_is_no_usable_device_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"--device .?{name}.?"):
        resolve_device(name)


def test_run_refuses_a_bad_device_before_any_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.pipeline

    ran = []
    monkeypatch.delenv("RECSAE_DEVICE", raising=False)
    monkeypatch.setattr(worker.pipeline, "run_pipeline", lambda config, **_: ran.append(config))
    result = runner.invoke(app, ["run", "-r", "bprmf", "--device", "tpu"])
    assert result.exit_code != 0 and "--device" in result.output and "tpu" in result.output
    assert ran == []


def test_run_hands_the_device_to_the_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.pipeline
    from core.settings import get_settings

    seen = []
    monkeypatch.setenv("RECSAE_DEVICE", "cpu")
    monkeypatch.setattr(
        worker.pipeline, "run_pipeline", lambda config, **_: seen.append(get_settings().device)
    )
    result = runner.invoke(app, ["run", "-r", "bprmf", "--device", "cpu:0"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen == ["cpu:0"]


def test_sae_trained_through_the_device_path_equals_the_default() -> None:
    """The device moves (steps on the device, evaluations on the CPU) change nothing on a CPU."""
    x, x_dev = planted(300), planted(80, seed=1)
    default, _ = train_sae(x, x_dev, FAST, progress=False)
    moved, _ = train_sae(x, x_dev, FAST, progress=False, device=torch.device("cpu:0"))
    for key, value in default.state_dict().items():
        assert torch.equal(value, moved.state_dict()[key]), key
    assert moved.b_dec.device == CPU


def test_batches_stay_put_on_the_cpu() -> None:
    batch = {"user": torch.arange(3)}
    assert to_device(batch, CPU) is batch
