"""TF-IDF concepts (docs/method.md §1.8, paper §3.3): construction documents, verification,
tokenisation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from core.reports import is_verified
from core.text import CONCEPT_STOP_WORDS, analyze, item_token_sets
from worker.interpret.examples import ExampleSet, LatentExamples
from worker.interpret.tfidf import (
    TfidfConfig,
    descriptive_text,
    not_concepts,
    tfidf_concepts,
    verify_term,
)

ITEMS = [
    "Toy Story (1995) Animation Children Comedy",  # 0
    "Antz (1998) Animation Children",  # 1
    "Heat (1995) Action Crime Thriller",  # 2
    "Se7en (1995) Crime Thriller",  # 3
    "Warriors (1979) Action",  # 4
    "Star Wars (1977) Action Sci-Fi",  # 5
]


def _set(rows: list[list[int]]) -> ExampleSet:
    n = max(len(r) for r in rows)
    items = np.array([r + [-1] * (n - len(r)) for r in rows], np.int64)
    # case ids are 100 + item so they differ from item ids
    return ExampleSet(
        case=np.where(items >= 0, items + 100, -1),
        item=items,
        activation=(items >= 0).astype(np.float32),
        level=(items >= 0).astype(np.int64),
    )


def _examples() -> LatentExamples:
    construction = _set([[0, 1], [2, 3], [4, 5], []])
    verification = _set([[0], [3, 4], [2, 0], []])
    random = _set([[2, 3], [0, 1], [3, 5], [0, 1]])
    return LatentExamples(
        construction=construction,
        verification=verification,
        random=random,
        n_active_construction=np.array([2, 2, 2, 0]),
        n_active_verification=np.array([1, 2, 2, 0]),
        too_rare=verification.count < 2,
        n=2,
        seed=0,
    )


def test_analyze_drops_numbers_short_tokens_stop_words_keeps_hyphens() -> None:
    assert analyze("Star Wars (1977) Action|Sci-Fi") == ["star", "wars", "action", "sci-fi"]
    assert analyze("The Children's Hour 2 A") == ["children", "hour"]
    assert analyze("Se7en, Amélie, WALL·E, 3D") == ["se7en", "amelie", "wall", "3d"]


def test_top_terms_match_hand_computed_tfidf() -> None:
    concepts = tfidf_concepts(_examples(), ITEMS)
    # 3 documents (latent 3 has none). "action" is in 2 of them, every other term in 1.
    idf1, idf2 = math.log(4 / 2) + 1, math.log(4 / 3) + 1  # smooth idf: ln((1+n)/(1+df)) + 1
    # latent 2: warriors star wars sci-fi (tf 1, df 1), action (tf 2, df 2)
    norm = math.sqrt((2 * idf2) ** 2 + 4 * idf1**2)
    c2 = concepts[2]
    assert [t for t, _ in c2.terms] == ["action", "sci-fi", "star"]  # ties: alphabetical
    assert c2.terms[0][1] == pytest.approx(2 * idf2 / norm)
    assert c2.terms[1][1] == pytest.approx(idf1 / norm)
    # latent 1: crime, thriller (tf 2) then heat (idf1) beats action (idf2)
    assert [t for t, _ in concepts[1].terms] == ["crime", "thriller", "heat"]
    assert concepts[0].text == "animation"


def test_verification_confidence_and_statuses() -> None:
    concepts = tfidf_concepts(_examples(), ITEMS)
    c2 = concepts[2]  # "action": positives Heat (hit), Toy Story (miss);
    # negatives Se7en (correct), Star Wars (has action: failure) -> (1 + 1) / (2 + 2)
    assert c2.status == "verified" and c2.confidence == 0.5
    assert [d["present"] for d in c2.details["verification"]] == [True, False]
    assert [d["correct"] for d in c2.details["random"]] == [True, False]
    assert [d["case"] for d in c2.details["verification"]] == [102, 100]
    c1 = concepts[1]  # "crime": positives Se7en (hit), Warriors (miss); negatives both correct
    assert c1.status == "verified" and c1.confidence == 0.75
    c0 = concepts[0]  # one verification case < N = 2: too rare, never verified
    assert c0.status == "too_rare" and c0.confidence is None and c0.text == "animation"
    c3 = concepts[3]
    assert c3.status == "no_text" and c3.text == "" and c3.terms == [] and c3.confidence is None


def test_matching_is_token_membership_not_substring() -> None:
    tokens = item_token_sets(ITEMS)
    assert verify_term("war", [5], [], tokens)[0] == 0.0  # "Star Wars" has "wars", not "war"
    assert verify_term("sci-fi", [5], [4], tokens) == (1.0, [True], [False])
    with pytest.raises(ValueError, match="at least one"):
        verify_term("x", [], [], tokens)


def test_all_documents_empty_gives_no_text() -> None:
    ex = _examples()
    concepts = tfidf_concepts(ex, ["(1995)", "", "the", "1", "a", "2"])
    assert {c.status for c in concepts} == {"no_text"}


def test_item_outside_text_is_loud() -> None:
    with pytest.raises(ValueError, match="outside item_text"):
        tfidf_concepts(_examples(), ITEMS[:3])


def test_a_term_shared_by_construction_items_beats_a_rarer_title_word() -> None:
    # latent 0's items share "drama"; "gump" is in one item only and in no other latent's
    # document, so plain TF-IDF would rank it first; a concept is what the items share.
    items = ["Forrest Gump (1994) Drama", "Up (2009) Drama", "Heat (1995) Drama Crime", "Se7en"]
    construction = _set([[0, 1], [2, 3]])
    empty = _set([[], []])
    examples = LatentExamples(
        construction=construction, verification=empty, random=empty,
        n_active_construction=np.array([2, 2]), n_active_verification=np.array([0, 0]),
        too_rare=np.array([True, True]), n=2, seed=0,
    )  # fmt: skip
    concepts = tfidf_concepts(examples, items)
    assert concepts[0].text == "drama"
    assert [t for t, _ in concepts[0].terms][1:] == ["forrest", "gump"]  # "up" is a stop word


def test_tfidf_null_scores_the_other_latents_concepts_on_this_latents_cases() -> None:
    """docs/method.md §1.11: null(l) = {conf(c_m, V_l) : m != l} and the base rate
    {conf(c_l, V_m) : m != l}, by hand on the toy data."""
    concepts = tfidf_concepts(_examples(), ITEMS)
    # latent 1 ("crime", 0.75): V_1 = positives Se7en, Warriors; negatives Toy Story, Antz.
    # Other concepts on V_1: "animation" (latent 0): 0 hits, both negatives carry it -> 0 / 4;
    # "action" (latent 2): Warriors hit, both negatives correct -> 3 / 4.
    # Its term on V_2 (Heat, Toy Story | Se7en, Star Wars): Heat hit, Se7en wrong -> 2 / 4.
    null = concepts[1].details["null"]
    assert (null["n"], null["n_other_concepts"], null["n_other_cases"]) == (3, 2, 1)
    assert null["mean"] == pytest.approx(1.25 / 3) and null["median"] == pytest.approx(0.5)
    assert null["p95"] == pytest.approx(0.5 + 0.25 * 0.9) and null["lift"] == pytest.approx(0.25)
    assert (null["r"], null["p"]) == (1, pytest.approx(2 / 4))  # 0.75 >= 0.75 once
    # latent 2 ("action", 0.5): "animation" 3 / 4, "crime" 2 / 4 on V_2; "action" on V_1 3 / 4
    null2 = concepts[2].details["null"]
    assert (null2["n"], null2["r"], null2["p"]) == (3, 3, pytest.approx(1.0))
    assert "null" not in concepts[0].details  # too rare: no confidence, no null
    assert not is_verified(concepts[1].confidence, null["p"])  # 0.75 < 0.8


def test_tfidf_null_sample_is_seeded_and_bounded() -> None:
    a = tfidf_concepts(_examples(), ITEMS, TfidfConfig(null_size=1, null_seed=3))
    b = tfidf_concepts(_examples(), ITEMS, TfidfConfig(null_size=1, null_seed=3))
    assert a[1].details["null"]["n"] == 2  # one of each part
    assert a[1].details["null"] == b[1].details["null"]


def test_tfidf_eq4_needs_enough_cases_on_each_side() -> None:
    ex = _examples()
    ex.random.case[1, 1] = ex.random.item[1, 1] = -1  # latent 1 keeps one negative of N = 2
    concepts = tfidf_concepts(ex, ITEMS)
    assert (concepts[1].status, concepts[1].confidence) == ("too_few_parsed", None)
    assert "1 negative" in concepts[1].details["reason"]
    assert concepts[2].status == "verified"


def test_each_concept_carries_its_margin_over_the_runner_up() -> None:
    concepts = tfidf_concepts(_examples(), ITEMS)
    c2 = concepts[2]  # action 2 idf2 / norm vs sci-fi idf1 / norm
    assert c2.details["runner_up"] == "sci-fi"
    assert c2.details["margin"] == pytest.approx(c2.terms[0][1] - c2.terms[1][1])
    assert concepts[1].details["margin"] == pytest.approx(0.0)  # crime and thriller tie


def test_candidates_come_from_descriptive_fields_title_words_only_when_asked() -> None:
    data = SimpleNamespace(
        item_title=["Die Hard (1988)", "Die Another Day (2002)", "Up (2009)"],
        item_genres=[["Action"], ["Action", "Thriller"], ["Animation"]],
        item_tags=[["christmas"], [], []],
        item_text=["Die Hard (1988) | Action | christmas", "Die Another Day (2002) | Action, "
                   "Thriller", "Up (2009) | Animation | a house flies"],
    )  # fmt: skip
    text = descriptive_text(data)  # type: ignore[arg-type]
    assert text == ["Action | christmas", "Action, Thriller", "Animation | a house flies"]
    assert descriptive_text(data, title_words=True)[0] == "Die Hard (1988) | Action | christmas"  # type: ignore[arg-type]
    construction = _set([[0, 1], [2]])
    empty = _set([[], []])
    examples = LatentExamples(
        construction=construction, verification=empty, random=empty,
        n_active_construction=np.array([2, 1]), n_active_verification=np.array([0, 0]),
        too_rare=np.array([True, True]), n=2, seed=0,
    )  # fmt: skip
    assert tfidf_concepts(examples, text)[0].text == "action"
    with_titles = tfidf_concepts(examples, descriptive_text(data, True))  # type: ignore[arg-type]
    assert "die" in [t for t, _ in with_titles[0].terms]


def test_peoples_names_and_stop_like_words_are_never_concepts() -> None:
    """docs/method.md §1.8, 'no names, no stop-like words': words carried only inside tags that
    read as a person's name, and core.text.CONCEPT_STOP_WORDS, are no candidates; a name's word
    that another field also carries ('ford' in a free text) stays one."""
    data = SimpleNamespace(
        item_title=["A (2001)", "B (2002)", "C (2003)"],
        item_genres=[["Comedy"], ["Comedy"], ["Drama"]],
        item_tags=[["Steve Buscemi", "high school"], ["Steve Buscemi", "Harrison Ford"],
                   ["high school"]],
        item_text=["A (2001) | Comedy | Steve Buscemi, high school",
                   "B (2002) | Comedy | Steve Buscemi, Harrison Ford | a ford pickup",
                   "C (2003) | Drama | high school"],
    )  # fmt: skip
    excluded = not_concepts(data)  # type: ignore[arg-type]
    assert excluded == CONCEPT_STOP_WORDS | {"steve", "buscemi", "harrison"}
    assert "high" in CONCEPT_STOP_WORDS and "school" not in excluded and "ford" not in excluded
    construction = _set([[0, 1], [2]])
    empty = _set([[], []])
    examples = LatentExamples(
        construction=construction, verification=empty, random=empty,
        n_active_construction=np.array([2, 1]), n_active_verification=np.array([0, 0]),
        too_rare=np.array([True, True]), n=2, seed=0,
    )  # fmt: skip
    text = descriptive_text(data)  # type: ignore[arg-type]
    # Without the rule "buscemi" ties "comedy" and "steve" (both items, one latent) and wins
    # alphabetically: the failure the rule is for.
    assert tfidf_concepts(examples, text)[0].text == "buscemi"
    concepts = tfidf_concepts(examples, text, TfidfConfig(n_terms=10), excluded=excluded)
    assert concepts[0].text == "comedy"
    terms = {t for c in concepts for t, _ in c.terms}
    assert terms.isdisjoint({"steve", "buscemi", "harrison", "high"})
    assert {"ford", "school"} <= terms
