"""Bounded concurrency on a real uvicorn server (backend/limits.py, docs/scaling.md "Admission").

A burst beyond a route class's cap is answered 503 with Retry-After within about a second,
never queued for 30 s and never a 500; the light routes (``/api/me``, pages) keep answering
while the heavy ones (segment steering) are at their cap; the server answers at once after a
burst. The reference is the clock and the status codes, not the limiter's own counters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.serve import background_server
from core.settings import Settings
from tests.backend.synthetic_run import steerable_run

RUN = "burst"
# A segment steer over 1,500 users x 3,000 items takes ~0.2 s on an idle core: with one heavy
# slot and a 0.3 s wait, a burst of 8 cannot all be admitted.
CAPS = {"concurrency_light": 3, "concurrency_heavy": 1, "admission_wait_s": 0.3}
# What "fast" means for a refusal: the wait plus a generous margin for a busy 2-core machine,
# counted from the burst's fastest answer (what any request cost at that moment: 60 fresh
# connections on a machine running the rest of the suite took 2.5 s to answer at all, 200s and
# 503s alike). A request queued for a pool connection would take the pool's 30 s.
FAST_S = 1.5
CLIENT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("admission")
    settings, _ = steerable_run(data_dir, RUN, seed=3, n_items=3000, n_users=1500)
    settings = settings.model_copy(update=CAPS)
    with background_server(settings, timeout_s=60) as base:
        # Build the steering engine before the clock starts (the first use loads the arrays).
        r = httpx.post(f"{base}/api/runs/{RUN}/segment/steer", json=_SEGMENT, timeout=60)
        assert r.status_code == 200, r.text
        yield base


_SEGMENT = {"edits": [{"latent": 1, "value": 3.0}]}


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> tuple:
    """(status or 'timeout', seconds, response or None)."""
    started = time.perf_counter()
    try:
        r = await client.request(method, url, **kw)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        return "timeout", time.perf_counter() - started, None
    return r.status_code, time.perf_counter() - started, r


async def _burst(base: str, n: int, method: str, path: str, probe: bool, **kw: object) -> tuple:
    """``n`` requests at once on fresh connections, and (``probe``) /api/me every 50 ms
    while they run; returns (burst results, probe results)."""
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT_S, limits=limits) as c:
        burst = asyncio.gather(*(_timed(c, method, path, **kw) for _ in range(n)))
        probes: list[tuple] = []

        async def probe_me() -> None:
            await asyncio.sleep(0.05)
            while not burst.done():
                probes.append(await _timed(c, "GET", "/api/me"))
                await asyncio.sleep(0.05)

        results, _ = await asyncio.gather(burst, probe_me() if probe else asyncio.sleep(0))
    return results, probes


def _check_refusals(results: list[tuple]) -> list[tuple]:
    statuses = [r[0] for r in results]
    assert "timeout" not in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses  # no 500, no other error
    refused = [r for r in results if r[0] == 503]
    fastest = min(r[1] for r in results)
    for _, seconds, response in refused:
        assert seconds - fastest < FAST_S, f"a refusal took {seconds:.2f} s ({fastest:.2f} s)"
        assert int(response.headers["Retry-After"]) >= 1
        assert "busy" in response.json()["detail"]
    return refused


def test_heavy_burst_is_refused_fast_while_light_routes_answer(server: str) -> None:
    results, probes = asyncio.run(
        _burst(server, 8, "POST", f"/api/runs/{RUN}/segment/steer", True, json=_SEGMENT)
    )
    refused = _check_refusals(results)
    assert refused, "8 segment steers at once with one heavy slot: some must be refused"
    assert any(r[0] == 200 for r in results)
    assert "RECSAE_CONCURRENCY_HEAVY=1" in refused[0][2].json()["detail"]
    # /api/me (a light route) answered every time, quickly, while the heavy class was full.
    assert probes, "the burst ended before /api/me was asked"
    assert all(p[0] == 200 for p in probes), [p[0] for p in probes]
    assert max(p[1] for p in probes) < FAST_S, [round(p[1], 3) for p in probes]


def test_light_burst_never_queues_or_fails(server: str) -> None:
    results, _ = asyncio.run(_burst(server, 60, "GET", f"/runs/{RUN}/latents/3.json", False))
    _check_refusals(results)
    assert any(r[0] == 200 for r in results)
    # Whatever was admitted ran; nothing waited for a pool connection for 30 s.
    assert max(r[1] for r in results) < 10, sorted(round(r[1], 2) for r in results)[-5:]
    started = time.perf_counter()
    after = httpx.get(f"{server}/api/me", timeout=CLIENT_TIMEOUT_S)
    assert after.status_code == 200
    assert time.perf_counter() - started < FAST_S


def test_settings_refuse_a_cap_below_one() -> None:
    from backend.app import create_app

    with pytest.raises(ValueError, match="RECSAE_CONCURRENCY_HEAVY must be at least 1"):
        create_app(Settings(concurrency_heavy=0))


def test_every_route_is_built_before_the_first_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI builds an included router's handlers (dependencies, validators) on the first
    request that reaches it unless the app built them at start-up: 100-400 ms on that request,
    once per worker, measured as the first ``/api/me`` after a burst (docs/scaling.md). The
    reference: FastAPI's own builder, counted once the app has started."""
    from fastapi import routing
    from fastapi.testclient import TestClient

    from backend.app import create_app

    built: list[str] = []
    real = routing._build_dependant_with_parameterless_dependencies

    def counting(**kw: Any) -> Any:
        built.append(kw["path"])
        return real(**kw)

    monkeypatch.setattr(routing, "_build_dependant_with_parameterless_dependencies", counting)
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'recsae.db'}",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        assert built, "start-up built no route: the counter does not see FastAPI's builder"
        built.clear()
        for path in (
            "/api/me",
            "/index.json",
            "/runs/none/latents/3.json",
            "/api/runs/none/steer/latents?q=a",
        ):
            assert client.get(path).status_code < 500
        assert client.post("/api/runs/none/users/1/steer", json={"edits": []}).status_code == 404
    assert built == [], f"built on a request's clock: {built}"
