"""The torch device the worker trains on (``recsae run --device``, ``RECSAE_DEVICE``;
docs/scaling.md).

Training (the recommender's epochs and the SAE's steps) runs on the device; dev evaluations,
probing, recording and everything after run on the CPU, and the trained weights come back to the
CPU before they are saved, so a run directory is the same whichever device trained it (up to the
device's floating-point differences).
"""

from __future__ import annotations

import torch

from worker.errors import ConfigError

CPU = torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", "mps") as a torch device this process can use, or a
    ConfigError that says what to do instead."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"--device {name!r} is not a torch device ({err}); use cpu, cuda, cuda:N or mps"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); install a "
                "CUDA build of torch on a machine with a GPU, or use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: the worker trains on cpu, cuda or mps only")
    return device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A training batch's tensors on ``device`` (no copy when they are there already)."""
    if device == CPU:
        return batch
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
