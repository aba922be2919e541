"""Labels that name something (issue 9, docs/method.md §1.8): the degenerate-label detector, the
one follow-up ask, and JSON-schema answers with the fall back to text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from core.llm.concepts import LLMConceptConfig, explain_and_verify
from core.llm.labels import GENERIC, REPEATS, TITLE, degenerate_reason, json_field, split_label
from core.llm.prompts import CaseText, explanation_messages, verification_messages
from core.llm.verify import parse_level_answer
from tests.worker.test_llm_client import Reply, chat_reply, fast_client, scripted
from tests.worker.test_llm_concepts import CTX, _last_item, latent

__all__ = ["scripted"]  # the fixture, imported for its side effect on pytest

SHOWN = [
    "Star Wars: Episode VII - The Force Awakens (2015) (Action, Adventure, Fantasy, Sci-Fi)",
    "War (2007) (Action, Drama, War)",
    "Alien (1979) (Horror, Sci-Fi)",
    "Toy Story (1995) (Animation, Children, Comedy)",
]


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("a comedy, comedy, comedy, comedy", REPEATS),
        ("comedy comedy", REPEATS),
        ("the movie", GENERIC),
        ("the movie it's looking for", GENERIC),
        ("films", GENERIC),
        ("Movies.", GENERIC),
        ("the movie Star Wars: The Force Awakens", TITLE),
        ("movies like Toy Story", TITLE),
        ("alien", TITLE),
        ("war movies", None),  # a genre shown, even though it is also a title
        ("horror films", None),
        ("science fiction adventures in space", None),
        ("sci-fi", None),
        ("animated films for children", None),
    ],
)
def test_degenerate_label_detector(label: str, reason: str | None) -> None:
    assert degenerate_reason(label, SHOWN, ["movies", "movie"]) == reason


def test_task_words_are_generic_for_any_catalogue() -> None:
    assert degenerate_reason("the products", [], ["products"]) == GENERIC
    assert degenerate_reason("the gadget", [], ["gadgets", "gadget"]) == GENERIC
    assert degenerate_reason("the gadget", [], []) is None


def test_split_label_and_json_fields() -> None:
    assert split_label("Alien (1979) (Horror, Sci-Fi)") == ("Alien (1979)", ["Horror", "Sci-Fi"])
    assert split_label("Alien (1979)") == ("Alien (1979)", [])
    assert json_field('{"explanation": "horror films"}', "explanation") == "horror films"
    assert json_field('{\n  "explanation": "horror fil', "explanation") == "horror fil"  # cut
    assert json_field("horror films", "explanation") is None
    assert [parse_level_answer(r) for r in ('{"level": 7}', '{"level": 11}', "7", "x")] == [
        7,
        None,
        7,
        None,
    ]


def _relabelling(first: str, second: str) -> Callable[[dict[str, Any]], Reply]:
    """Explain ``first``, then ``second`` when told why; level 9 for horror, 1 otherwise."""

    def answer(payload: dict[str, Any]) -> Reply:
        msgs = payload["messages"]
        if "Activations:" in msgs[3]["content"]:
            return chat_reply(second if len(msgs) > 4 else first)
        return chat_reply("9" if "Horror" in _last_item(payload) else "1")

    return answer


def test_a_generic_label_is_rejected_with_its_reason_and_asked_once_more(
    scripted: Callable,
) -> None:
    server = scripted(_relabelling("the movie it's looking for", "horror films"))
    concept = explain_and_verify(latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3))
    assert (concept.text, concept.status) == ("horror films", "verified")
    assert concept.details["rejected"] == [
        {"text": "the movie it's looking for", "reason": GENERIC}
    ]
    assert concept.details["explanation_answers"] == ["the movie it's looking for", "horror films"]
    follow_up = next(r for r in server.requests if len(r["messages"]) > 4)
    assert "would fit any neuron" in follow_up["messages"][-1]["content"]
    assert follow_up["messages"][-2] == {
        "role": "assistant",
        "content": "the movie it's looking for",
    }


def test_a_label_degenerate_twice_is_stored_degenerate_without_confidence(
    scripted: Callable,
) -> None:
    server = scripted(_relabelling("a comedy, comedy, comedy, comedy", "the movie"))
    concept = explain_and_verify(latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3))
    assert (concept.status, concept.confidence, concept.text) == ("degenerate", None, "the movie")
    assert [r["reason"] for r in concept.details["rejected"]] == [REPEATS, GENERIC]
    assert concept.details["reason"] == (
        "the label repeats itself, and the one given after being told so is generic: "
        "it names nothing, so it is not verified"
    )
    assert len(server.requests) == 2  # asked once more, then nothing verified


def test_json_schema_answers_are_asked_for_and_parsed(scripted: Callable) -> None:
    def answer(payload: dict[str, Any]) -> Reply:
        assert payload["response_format"]["type"] == "json_schema"
        if "Activations:" in payload["messages"][3]["content"]:
            return chat_reply('{"explanation": "horror films"}')
        return chat_reply('{"level": 9}' if "Horror" in _last_item(payload) else '{"level": 0}')

    server = scripted(answer)
    concept = explain_and_verify(latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3))
    assert concept.text == "horror films" and concept.details["n_unparseable"] == 0
    # Weird (a positive) reads 0, Horror Lookalike (a negative) 9: 4 of 6 correct
    assert concept.confidence == pytest.approx(4 / 6)
    schema = server.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["explanation"]


def test_a_server_refusing_the_schema_gets_plain_text_from_then_on(scripted: Callable) -> None:
    def answer(payload: dict[str, Any]) -> Reply:
        if "response_format" in payload:
            return Reply(400, {"error": {"message": "response_format is not supported"}})
        if "Activations:" in payload["messages"][3]["content"]:
            return chat_reply("horror films")
        return chat_reply("9" if "Horror" in _last_item(payload) else "1")

    server = scripted(answer)
    client = fast_client(server.base_url, concurrency=1)
    concept = explain_and_verify(latent(), client, CTX, LLMConceptConfig(n=3))
    assert concept.status == "verified" and concept.confidence == pytest.approx(4 / 6)
    assert client.response_format_refused
    refused = [r for r in server.requests if "response_format" in r]
    assert len(refused) == 1  # refused once; every later ask is plain text
    assert len(server.requests) == 1 + 1 + 6


def test_json_prompts_show_the_one_shot_answer_as_json(scripted: Callable) -> None:
    """Asked for JSON, the example answers in JSON too (SmolLM2 otherwise wrote the key's name
    as its explanation); in plain text the example stays plain."""
    case = CaseText(("A",), "Alien (1979) (Horror)", 9)
    plain = explanation_messages(1, [case], CTX)[2]["content"]
    assert json.loads(explanation_messages(1, [case], CTX, True)[2]["content"]) == {
        "explanation": plain
    }
    level = verification_messages(1, "horror films", case, CTX, True)[2]["content"]
    assert json.loads(level) == {
        "level": int(verification_messages(1, "x", case, CTX)[2]["content"])
    }
    server = scripted(lambda p: chat_reply('{"explanation": "explanation"}'))
    concept = explain_and_verify(latent(), fast_client(server.base_url), CTX, LLMConceptConfig(n=3))
    assert concept.status == "degenerate"  # the key's name is no concept
    assert json.loads(server.requests[0]["messages"][2]["content"])["explanation"]
