"""benchmarks/steer.py counts every answer that is not 2xx, in each of its three loops: with
every third request asking for a latent the run lacks, each loop's error count must be the
number of such requests it sent."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import steer

LATENTS = 64
TINY = ["--items", "300", "--users", "30", "--latents", str(LATENTS), "--k", "4",
        "--workers", "1", "--rate", "20", "--open-s", "1", "--closed-s", "1", "--clients", "2",
        "--sequential", "12"]  # fmt: skip
WARM = 8  # the requests benchmarks/steer.py warms the worker with (8 per worker), before loops


def bad(i: int) -> bool:
    return i >= WARM and i % 3 == 0


def test_every_loop_counts_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    real = steer._bodies

    def bodies(n: int, n_users: int, n_latents: int, seed: int) -> list[tuple[int, Any]]:
        out = real(n, n_users, n_latents, seed)
        for i, (_, body) in enumerate(out):
            if bad(i):  # a latent the run does not have: the API refuses it (4xx)
                body["edits"][0]["latent"] = LATENTS + 5
        return out

    monkeypatch.setattr(steer, "_bodies", bodies)
    out = steer.main(TINY)
    assert out["sequential"]["requests"] == 12
    assert out["sequential"]["errors"] == sum(bad(i) for i in range(12))  # i = 9
    assert out["sequential"]["first_error"].startswith("4")
    assert out["open_loop"]["requests"] == 20
    assert out["open_loop"]["errors"] == sum(bad(i) for i in range(20))  # i = 9, 12, 15, 18
    closed = out["closed_loop"]
    assert 0 < closed["errors"] < closed["requests"]
    assert out["targets"]["zero_errors"] is False
