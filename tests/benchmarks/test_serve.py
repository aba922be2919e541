"""benchmarks/serve.py gives a p99 only from 200 samples per page on, and a page that does not
answer 200 stops it with the page's URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import serve
from core.settings import Settings


def test_p99_needs_200_samples() -> None:
    times = [float(t) for t in range(1, 201)]  # 1 .. 200 ms, shuffled below
    times = times[::2] + times[1::2]
    # nearest rank: the ceil(0.99 * 200) = 198th smallest
    assert serve.summarise(times) == {"median_ms": 100.5, "p99_ms": 198.0, "n": 200}
    assert serve.summarise(times[:199])["p99_ms"] is None
    assert serve.summarise([5.0] * 20) == {"median_ms": 5.0, "p99_ms": None, "n": 20}


@pytest.fixture
def empty_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings(data_dir=tmp_path)  # no demo DB: the benchmark generates its runs
    monkeypatch.setattr(serve, "get_settings", lambda: settings)
    return settings


def test_smoke_tiny(empty_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "browser_loads", lambda base, paths: None)  # chromium: e2e tests
    monkeypatch.setattr(serve, "N_LATENTS", 64)
    out = serve.main(["--requests", "3", "--first-loads", "1"])
    assert out["source"] == "generated" and out["requests"] == 3
    pages = out["pages"]
    for name in serve.latency_pages(serve.Target("bench", 64, 600, "bench-steer", "x"), 1):
        assert pages[name]["n"] == 3 and pages[name]["p99_ms"] is None
        assert pages[name]["median_ms"] > 0
    assert pages["latent page"]["first_load_bytes"] > 0 and pages["run report"]["n_loads"] == 1


def test_a_failing_page_stops_it() -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if "999" in request.url.path else 200, text="page")

    with httpx.Client(base_url="http://bench", transport=httpx.MockTransport(answer)) as client:
        assert len(serve.time_requests(client, ["/runs/r/latents/1"] * 3)) == 3
        with pytest.raises(RuntimeError, match=r"GET /runs/r/latents/999 -> 404"):
            serve.time_requests(client, ["/runs/r/latents/1", "/runs/r/latents/999"])
