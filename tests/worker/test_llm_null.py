"""The LLM confidence's permutation null (docs/method.md §1.11) against a scripted LLM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from core.llm.concepts import CaseText, LatentCases, LLMConceptConfig, explain_latents
from core.llm.null import llm_null
from core.reports import details_null_p, is_verified, verdict
from tests.worker.test_llm_client import Reply, chat_reply, fast_client, scripted
from tests.worker.test_llm_concepts import CTX, _last_item

__all__ = ["scripted"]  # the fixture, imported for its side effect on pytest

GENRES = ["Horror", "Comedy", "Western", "Musical"]


def _latent(i: int, genre: str) -> LatentCases:
    def cases(prefix: str, level: int) -> list[CaseText]:
        return [CaseText(("Old Movie",), f"{prefix} {c} (x)", level) for c in "ABC"]

    return LatentCases(i, cases(f"{genre} Night", 9), cases(genre, 8), cases("Plain", 0))


def _answer(payload: dict[str, Any]) -> Reply:
    """Explain a latent by the genre of its items; level 9 when the explanation's genre is in
    the item's name, else 0 ("Musical" latents explain themselves as "the movie": degenerate)."""
    content = payload["messages"][3]["content"]
    if "Activations:" in content:
        genre = next(g for g in GENRES if f"{g} Night" in content)
        return chat_reply("the movie" if genre == "Musical" else f"{genre.lower()} films")
    explanation = content.split("does is find ")[1].split("\n")[0].split()[0]
    return chat_reply("9" if explanation.lower() in _last_item(payload).lower() else "0")


def test_null_is_other_latents_explanations_on_this_latents_cases(scripted: Callable) -> None:
    server = scripted(_answer)
    client = fast_client(server.base_url)
    latents = [_latent(i, g) for i, g in enumerate(GENRES)]
    config = LLMConceptConfig(n=3, json_schema=False)
    concepts = explain_latents(latents, client, CTX, config, progress=False)
    assert [c.status for c in concepts] == ["verified"] * 3 + ["degenerate"]
    before = len(server.requests)
    llm_null(concepts, latents, client, CTX, config, size=8, seed=0, progress=False)
    horror = concepts[0]
    null = horror.details["null"]
    # "comedy films" and "western films" on the horror cases: every level 0, so the positives
    # miss and the negatives are right: 3 / 6 each; the degenerate "the movie" is no null concept
    assert [e["text"] for e in null["concepts"]] == ["comedy films", "western films"]
    assert [e["confidence"] for e in null["concepts"]] == [0.5, 0.5]
    assert (null["p95"], null["n"], null["lift"]) == (0.5, 2, 0.5)
    # neither reaches 1.0: r = 0, p = 1 / 3; but 2 draws are no 5% test (n >= 19 needed)
    assert (null["r"], null["p"]) == (0, pytest.approx(1 / 3))
    assert horror.confidence == 1.0 and verdict(horror.confidence, horror.details) == "no_null"
    assert not is_verified(horror.confidence, details_null_p(horror.details))
    assert len(server.requests) - before == 3 * 2 * 6  # 3 latents x 2 null concepts x 2N cases
    assert "null" not in concepts[3].details


def test_null_size_bounds_the_cost_and_the_sample_is_seeded(scripted: Callable) -> None:
    server = scripted(_answer)
    client = fast_client(server.base_url)
    latents = [_latent(i, g) for i, g in enumerate(GENRES)]
    config = LLMConceptConfig(n=3, json_schema=False)
    runs = []
    for _ in range(2):
        concepts = explain_latents(latents, client, CTX, config, progress=False)
        before = len(server.requests)
        llm_null(concepts, latents, client, CTX, config, size=1, seed=5, progress=False)
        assert len(server.requests) - before == 3 * 1 * 6
        runs.append([c.details.get("null", {}).get("concepts") for c in concepts])
    assert runs[0] == runs[1] and all(len(r) == 1 for r in runs[0][:3])


def test_a_lone_concept_has_no_null_and_is_not_verified(scripted: Callable) -> None:
    server = scripted(_answer)
    client = fast_client(server.base_url)
    latents = [_latent(0, "Horror")]
    config = LLMConceptConfig(n=3, json_schema=False)
    concepts = explain_latents(latents, client, CTX, config, progress=False)
    llm_null(concepts, latents, client, CTX, config, size=8, seed=0, progress=False)
    null = concepts[0].details["null"]
    assert null["n"] == 0 and null["p95"] is None
    assert concepts[0].confidence == pytest.approx(1.0)
    assert null["p"] is None and not is_verified(concepts[0].confidence, null["p"])
