"""The sweep trains on the shipped SAE's own vectors (docs/method.md §1.4, §1.9): for a
one-vector model the TRAIN vectors plus their fold-ins, not the TRAIN vectors alone."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from worker.cases import DEV, TEST, TRAIN, Cases
from worker.stages import sweep as sweep_stage


def test_sweep_trains_on_the_fold_in_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    side = np.array([TRAIN] * 6 + [DEV] * 2 + [TEST] * 2, dtype=np.int8)
    reps = np.arange(40, dtype=np.float32).reshape(10, 4)
    cases = Cases(np.arange(10), np.full(10, 3), side)
    fold_ins = np.full((5, 4), -1.0, dtype=np.float32)
    seen: dict[str, Any] = {}

    def fold(run: Any, x_train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        return np.concatenate([x_train, fold_ins]), {}

    def fake_sweep(x_train: np.ndarray, x_dev: np.ndarray, x_test: np.ndarray, **_: Any) -> list:
        seen["x_train"] = x_train
        return []

    monkeypatch.setattr(sweep_stage, "fold_in_training_vectors", fold)
    monkeypatch.setattr(sweep_stage, "sensitivity_sweep", fake_sweep)
    monkeypatch.setattr(sweep_stage, "sae_config", lambda *a, **k: None)
    run = SimpleNamespace(
        config=SimpleNamespace(sweep=True, seed=0),
        probe=SimpleNamespace(cases=cases, reps=reps, sequential=False),
        write_json=lambda *a: None,
        log=lambda *a: None,
    )
    sweep_stage.sweep(run)  # type: ignore[arg-type]
    assert seen["x_train"].shape == (11, 4)  # 6 TRAIN vectors + 5 fold-ins
    assert np.array_equal(seen["x_train"][:6], reps[:6])
    assert np.array_equal(seen["x_train"][6:], fold_ins)
