"""benchmarks/llm.py prints what it measured: against a scripted LLM server whose level answers
for 1990s movies never parse, its unparseable share is the share of such cases (counted here
from the cases themselves), the warm rerun reports the requests it made (none) and its cache
hits, and no key is a copy of another."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks import llm
from tests.worker.test_llm_client import Reply, ScriptedLLM, chat_reply

# (--jobs 0: the jobs' durability figures are tests/benchmarks/test_jobs.py's)
ARGS = ["--latents", "3", "--n", "3", "--null", "1", "--concurrency", "1", "2", "--jobs", "0"]


def _predicted(payload: dict[str, Any]) -> str:
    content = payload["messages"][3]["content"]
    return content.split("in the sequence:\n")[1].split("\n")[0]


def answer(payload: dict[str, Any]) -> Reply:
    if "Activations:" in payload["messages"][3]["content"]:
        return chat_reply(json.dumps({"explanation": "dramas about families"}))
    if "199" in _predicted(payload):
        return chat_reply("I cannot tell")  # never a level, even when nudged
    return chat_reply(json.dumps({"level": 8}))


def test_figures_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_server(**kw: Any) -> ScriptedLLM:
        server = ScriptedLLM(answer)
        server.model_path = kw["model_path"] + ".gguf"  # type: ignore[attr-defined]
        return server

    monkeypatch.setattr(llm, "demo_latents", lambda *args, **kw: None)
    monkeypatch.setattr(llm, "LocalLLM", fake_server)
    figures = llm.main(ARGS)

    latents = llm.synthetic_latents(3, 3, 0)  # the benchmark's own (seed 0)
    verified = [c for lat in latents for c in (*lat.verification, *lat.random)]
    nineties = sum("199" in c.predicted for c in verified)
    assert 0 < nineties < len(verified)
    assert figures["level_answers"] == len(verified)
    assert figures["unparseable_level_share"] == round(nineties / len(verified), 4)
    levels = figures["predicted_levels"]  # the answers per side, counted from the cases
    assert sum(n for side in levels.values() for n in side.values()) == len(verified)
    assert sum(side.get("unparseable", 0) for side in levels.values()) == nineties
    assert figures["degenerate_share"] == 0.0  # every label was accepted
    assert figures["rerun_requests"] == 0 and figures["rerun_rps"] == 0.0  # all from the cache
    assert figures["cache_hit_rate_rerun"] == 1.0 and figures["rerun_cache_lookups_per_s"] > 0
    assert "unparseable_share" not in figures
    per = figures["models"]["smollm2-135m"]  # the per-model keys docs/llm.md compares
    assert per["parseable_share"] == 1.0 and per["degenerate_share"] == 0.0
    assert per["verified_over_null"] == figures["verified_over_null"]
    assert per["seconds_per_label"] > 0  # the last cold run's seconds over its 3 latents
    # seconds_per_label is rounded to 0.01 (x 3 latents) and seconds_c2 to 0.1: at most
    # 3 x 0.005 + 0.05 apart (0.06 failed once on 0.22 x 3 against 0.6)
    assert abs(per["seconds_per_label"] * 3 - figures["seconds_c2"]) <= 0.065 + 1e-9
    for conc in (1, 2):  # cold runs: every request reached the server
        assert figures[f"rps_c{conc}"] > 0
