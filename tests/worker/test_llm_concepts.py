"""Prompts, strict parsing, equation 4, and explain-and-verify against a scripted LLM."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.llm.cache import LLMCache
from core.llm.concepts import (
    CaseText,
    ItemLookup,
    LatentCases,
    LLMConceptConfig,
    equation4,
    explain_and_verify,
    explain_latents,
)
from core.llm.prompts import (
    LEVEL_NUDGE,
    PromptContext,
    explanation_messages,
    load_oneshot,
    oneshot_kind,
    parse_explanation,
    parse_level,
    verification_messages,
)
from core.llm.verify import score_levels
from core.reports import min_parsed_per_side
from tests.worker.test_llm_client import Reply, ScriptedLLM, chat_reply, fast_client, scripted

__all__ = ["scripted"]  # the fixture, imported for its side effect on pytest

CTX = PromptContext("movies", "movie", "movielens", history_len=3)


@pytest.mark.parametrize(
    ("raw", "level"),
    [("7", 7), (" 10\n", 10), ("0.", 0), ("'3'", 3), ("11", None), ("-1", None),
     ("7/10", None), ("about 7", None), ("", None), ("7 8", None), ("seven", None)],
)  # fmt: skip
def test_parse_level_is_strict(raw: str, level: int | None) -> None:
    assert parse_level(raw) == level


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("horror films.", "horror films"),
        ("The main thing this neuron does is find \"space operas\".", "space operas"),
        ("Explanation of neuron 4 behavior: the main thing this neuron does is find "
         "war movies\nmore text", "war movies"),
        ("  \n  ", None),
        ("...", None),
    ],
)  # fmt: skip
def test_parse_explanation_cleans(raw: str, text: str | None) -> None:
    assert parse_explanation(raw) == text


def test_parse_explanation_caps_length_at_a_word() -> None:
    text = parse_explanation("word " * 100, max_chars=23)
    assert text == "word word word word"


def test_equation4_over_parseable_only() -> None:
    # pos: 9 hit, 3 miss, None excluded; neg: 0 hit, 6 miss, None excluded -> 2 / 4
    assert equation4([9, 3, None], [0, 6, None], threshold=5) == 0.5
    assert equation4([6], [5], threshold=5) == 1.0  # > thres positive, <= thres negative
    assert equation4([None], [None], threshold=5) is None


def test_oneshot_kind() -> None:
    assert oneshot_kind("ml-latest-small") == "movielens"
    assert oneshot_kind("MovieLens-1M") == "movielens"
    assert oneshot_kind("amazon-grocery") == "generic"


def test_explanation_prompt_structure() -> None:
    case = CaseText(("A", "B", "C", "D", "E"), "Alien (1979) (Horror)", 9)
    msgs = explanation_messages(42, [case], CTX)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert "recommend movies" in msgs[0]["content"] and "movie<tab>activation" in msgs[0]["content"]
    last = msgs[-1]["content"]
    assert last.startswith("Neuron 42\nActivations:\n<start>\n")
    # the real history's last 3 items at activation 0, then the prediction with its level
    assert "C\t0\nD\t0\nE\t0\nAlien (1979) (Horror)\t9\n<end>" in last
    assert "A\t0" not in last
    assert last.endswith("the main thing this neuron does is find")


def test_verification_prompt_structure() -> None:
    case = CaseText(("A", "B"), "Alien (1979) (Horror)", 9)
    msgs = verification_messages(3, "horror films", case, CTX)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert re.fullmatch(r"\d+", msgs[2]["content"])  # the one-shot answer is a bare level
    last = msgs[-1]["content"]
    assert "does is find horror films\nSequence:\nA\nB\nAlien (1979) (Horror)\n" in last
    assert "Last movie in the sequence:\nAlien (1979) (Horror)\n" in last
    assert "\t9" not in last  # the true level is never shown


def test_item_lookup_labels_and_from_ids() -> None:
    items = ItemLookup(["Alien (1979)", "Heat (1995)"], [["Horror", "Sci-Fi"], []])
    lat = LatentCases.from_ids(1, items, [([1], 0, 8)], [([0, 1], 0, 7)], [([0], 1, 0)])
    assert lat.construction == [CaseText(("Heat (1995)",), "Alien (1979) (Horror, Sci-Fi)", 8)]
    with pytest.raises(KeyError, match="item 5"):
        items.label(5)


def _last_item(payload: dict[str, Any]) -> str:
    content = payload["messages"][3]["content"]
    return content.split("in the sequence:\n")[1].split("\n")[0]


def latent(latent_id: int = 1, n: int = 3) -> LatentCases:
    def cases(names: list[str], level: int) -> list[CaseText]:
        return [CaseText(("Old Movie",), name, level) for name in names]

    return LatentCases(
        latent_id,
        construction=cases([f"Night of Fear {i} (Horror)" for i in range(n)], 9),
        verification=cases(["Horror A", "Horror B", "Weird"][:n], 8),
        random=cases(["Comedy A", "Retry Comedy", "Horror Lookalike"][:n], 0),
    )


def responder(explanation: str = "horror films") -> Callable[[dict[str, Any]], Reply]:
    """Explain "horror films"; level 9 for horror, 1 for comedy; "Weird" never parses;
    "Retry Comedy" parses only after the nudge."""

    def answer(payload: dict[str, Any]) -> Reply:
        msgs = payload["messages"]
        if "Activations:" in msgs[3]["content"]:
            return chat_reply(explanation)
        item = _last_item(payload)
        if item == "Weird":
            return chat_reply("I cannot tell")
        if item == "Retry Comedy":
            nudged = msgs[-1]["content"] == LEVEL_NUDGE
            return chat_reply("1" if nudged else "probably low")
        return chat_reply("9" if "Horror" in item else "1")

    return answer


def test_explain_and_verify_excludes_unparseable_and_retries(scripted: Callable) -> None:
    server: ScriptedLLM = scripted(responder())
    client = fast_client(server.base_url)
    concept = explain_and_verify(latent(), client, CTX, LLMConceptConfig(n=3, max_retries=2))
    assert concept.text == "horror films" and concept.status == "verified"
    # parseable: pos Horror A 9, Horror B 9 (2 hits); neg Comedy A 1, Retry 1 (hits),
    # Horror Lookalike 9 (miss); Weird excluded -> 4 / 5
    assert concept.confidence == pytest.approx(4 / 5)
    by_item = {c["predicted_item"]: c for c in concept.details["cases"]}
    assert by_item["Weird"]["unparseable"] and by_item["Weird"]["predicted_level"] is None
    assert len(by_item["Weird"]["answers"]) == 3  # asked 1 + 2 retries
    assert by_item["Retry Comedy"]["predicted_level"] == 1
    assert by_item["Retry Comedy"]["answers"] == ["probably low", "1"]
    assert concept.details["n_unparseable"] == 1 and concept.model == "scripted-model"
    row = concept.to_row()
    assert row["method"] == "llm" and row["confidence"] == concept.confidence


def test_too_few_parsed_answers_give_no_confidence(scripted: Callable) -> None:
    server = scripted(
        lambda p: chat_reply(
            "horror films" if "Activations:" in p["messages"][3]["content"] else "?"
        )
    )
    concept = explain_and_verify(
        latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3, max_retries=1)
    )
    assert concept.status == "too_few_parsed" and concept.confidence is None
    assert concept.text == "horror films" and concept.details["n_parseable"] == 0


def test_eq4_one_sided_answers_give_no_confidence(scripted: Callable) -> None:
    """Issue 9: every positive parses ("9"), no negative does -- half the answers parse, and the
    old rule gave 1.0 resting on positives alone. Each side needs ceil(0.6 N) parsed answers."""

    def answer(payload: dict[str, Any]) -> Reply:
        if "Activations:" in payload["messages"][3]["content"]:
            return chat_reply("horror films")
        return chat_reply("9" if "Horror" in _last_item(payload) else "no idea")

    lat = latent()
    lat.verification = [CaseText(("Old Movie",), f"Horror {c}", 8) for c in "ABC"]
    lat.random = [CaseText(("Old Movie",), f"Comedy {c}", 0) for c in "ABC"]
    concept = explain_and_verify(
        lat, fast_client(scripted(answer).base_url), CTX, LLMConceptConfig(n=3, max_retries=0)
    )
    assert concept.details["n_parseable"] == 3 and concept.details["n_unparseable"] == 3
    assert (concept.status, concept.confidence) == ("too_few_parsed", None)
    assert "0 negative" in concept.details["reason"] and "needs 2" in concept.details["reason"]


def test_min_parsed_per_side_and_score_levels() -> None:
    assert [min_parsed_per_side(n) for n in (1, 2, 3, 5, 10)] == [1, 2, 2, 3, 6]
    assert score_levels([9, 9, None], [1, None, None], 3, 5)[1] == "too_few_parsed"
    assert score_levels([9, 2, None], [1, 7, None], 3, 5) == (0.5, "verified", None)


def test_unparseable_explanation(scripted: Callable) -> None:
    server = scripted(lambda p: chat_reply("..."))
    concept = explain_and_verify(
        latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3, max_retries=1)
    )
    assert (concept.status, concept.text, concept.confidence) == ("unparseable", "", None)
    assert len(server.requests) == 2  # no verification without an explanation


def test_a_copy_of_the_oneshot_explanation_is_no_explanation(scripted: Callable) -> None:
    copied = load_oneshot(CTX.oneshot).explanation
    server = scripted(responder(explanation=f"{copied.capitalize()}."))
    concept = explain_and_verify(
        latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3, max_retries=1)
    )
    assert (concept.status, concept.text, concept.confidence) == ("unparseable", "", None)
    assert "one-shot" in concept.details["reason"]
    assert len(server.requests) == 2  # asked again once, then given up: nothing verified


def test_too_rare_is_explained_not_verified(scripted: Callable) -> None:
    server = scripted(responder())
    rare = latent()
    rare.verification = rare.verification[:2]
    concept = explain_and_verify(rare, fast_client(server.base_url), CTX, LLMConceptConfig(n=3))
    assert (concept.status, concept.confidence, concept.text) == ("too_rare", None, "horror films")
    assert len(server.requests) == 1


def test_explain_latents_selects_orders_and_resumes_from_cache(
    scripted: Callable, tmp_path: Path
) -> None:
    server = scripted(responder())
    cache = LLMCache(tmp_path / "c.sqlite")
    client = fast_client(server.base_url, cache=cache, concurrency=3)
    latents = [latent(i) for i in range(5)]
    config = LLMConceptConfig(n=3)
    out = explain_latents(
        latents, client, CTX, config, latent_ids=[4, 1, 3], limit=2, progress=False
    )
    assert [c.latent_id for c in out] == [1, 3]
    n_requests = len(server.requests)
    again = explain_latents(latents, client, CTX, config, latent_ids=[1, 3], progress=False)
    assert len(server.requests) == n_requests  # all from the cache
    assert [c.confidence for c in again] == [c.confidence for c in out]
    assert all(c.details["cached"] == c.details["requests"] for c in again)
    with pytest.raises(KeyError, match="99"):
        explain_latents(latents, client, CTX, config, latent_ids=[99], progress=False)
