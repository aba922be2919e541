"""The study designer's filter (docs/method.md §5), server side: GET /studies with a run, a
concept text, methods, a verdict and a confidence floor lists the latents a study would rate,
ticked, in the form that creates it; the ticked latents (and only they) become the study.
Expected latents come from the factory's own rules (tests/backend/factories.py), not from the
code under test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from backend.app import create_app
from backend.routes.study_designer import Verdict
from core import study_design
from core.reports import VERDICTS
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Concept, Study, StudyItem
from tests.backend.accounts import signed_in, signed_out
from tests.backend.factories import CONCEPTS, llm_confidence, publish_fixture, tfidf_confidence

HTML = {"accept": "text/html"}
N_LATENTS = 20  # the factory run's


@pytest.fixture
def setup(fresh_settings: Settings) -> Iterator[tuple[TestClient, Any]]:
    sessions = session_factory(fresh_settings.resolved_database_url)
    publish_fixture(sessions)
    with TestClient(create_app(fresh_settings)) as client:
        signed_in(client, "admin", "designer")
        yield client, sessions


def found(client: TestClient, **params: Any) -> list[int]:
    """The latents the designer lists for ``params`` (the page's JSON twin)."""
    answer = client.get("/studies.json", params={"run": "fixture", **params})
    assert answer.status_code == 200, answer.text
    return [row["latent"] for row in answer.json()["designer"]["candidates"]]


def tfidf_text(i: int) -> str | None:
    return None if tfidf_confidence(i) is None else CONCEPTS[i % len(CONCEPTS)]


def llm_text(i: int) -> str | None:
    return None if llm_confidence(i) is None else f"films about {CONCEPTS[i % len(CONCEPTS)]}"


def test_the_filter_finds_latents_by_concept_text_method_and_confidence(setup: Any) -> None:
    client, _ = setup
    horror_tfidf = [i for i in range(N_LATENTS) if (tfidf_text(i) or "").find("horror") >= 0]
    assert found(client, q="HoRR", methods="tfidf", min_confidence=0) == horror_tfidf == [0, 5, 10]
    # both methods: a latent qualifies by either of its concepts
    comedy = [
        i
        for i in range(N_LATENTS)
        if "comedy" in (tfidf_text(i) or "") or "comedy" in (llm_text(i) or "")
    ]
    assert found(client, q="comedy", methods="both", min_confidence=0) == comedy == [1, 6, 16]
    # the floor applies to the concept the study would rate: LLM concepts at 0.8 or more
    strong_llm = [i for i in range(N_LATENTS) if (llm_confidence(i) or 0) >= 0.8]
    assert found(client, methods="llm", min_confidence=0.8) == strong_llm == [0, 6, 10, 16]
    assert found(client, q="no such concept", min_confidence=0) == []


def test_the_filter_finds_latents_by_verdict(setup: Any) -> None:
    client, sessions = setup
    # Without a null of 19 draws no concept is verified: at 0.8 and above each reads "no null".
    assert found(client, methods="llm", verdict="verified", min_confidence=0) == []
    assert found(client, methods="llm", verdict="no_null", min_confidence=0) == [0, 6, 10, 16]
    with sessions.begin() as session:  # latent 6's LLM concept gets a null that rejects
        session.execute(
            update(Concept)
            .where(Concept.run_id == "fixture", Concept.latent_idx == 6, Concept.method == "llm")
            .values(details={"null": {"p": 0.01, "n": 99}})
        )
    assert found(client, methods="llm", verdict="verified", min_confidence=0) == [6]
    assert found(client, methods="both", verdict="verified", min_confidence=0) == [6]
    assert found(client, methods="tfidf", verdict="verified", min_confidence=0) == []
    below = [i for i in range(N_LATENTS) if tfidf_confidence(i) is not None
             and tfidf_confidence(i) < 0.8]  # type: ignore[operator]  # fmt: skip
    assert found(client, methods="tfidf", verdict="below", min_confidence=0) == below


def test_the_page_ticks_the_found_latents_and_creates_the_study_from_the_ticked(
    setup: Any,
) -> None:
    client, sessions = setup
    page = client.get(
        "/studies", params={"run": "fixture", "q": "horror", "methods": "tfidf",
                            "min_confidence": "0"}, headers=HTML,
    )  # fmt: skip
    assert page.status_code == 200
    ticked = re.findall(r'<input type="checkbox" name="pick" value="(\d+)" checked', page.text)
    assert ticked == ["0", "5", "10"]
    assert "3 latents of fixture match" in page.text
    assert 'name="from_filter" value="true"' in page.text
    # the form takes the filter's run, methods and floor
    create = page.text[page.text.index('class="new-study"') :]
    assert re.search(r'name="methods">[^/]*<option value="tfidf" selected>', create)
    assert re.search(r'name="min_confidence" [^>]*value="0.0"', create)
    form = {"run_id": "fixture", "name": "found", "size": "100", "min_confidence": "0",
            "methods": "tfidf", "from_filter": "true", "pick": ["0", "10"]}  # fmt: skip
    made = client.post("/studies", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    study = int(made.headers["location"].rsplit("/", 1)[1])
    with sessions() as session:
        items = session.scalars(select(StudyItem).filter_by(study_id=study)).all()
        assert sorted(i.latent_idx for i in items) == [0, 10]
        assert session.get(Study, study).size == 2  # type: ignore[union-attr]
    # Nothing ticked: refused saying what to do, nothing written (not a random sample).
    refused = client.post("/studies", data={**form, "pick": []})
    assert refused.status_code == 400 and "no latent is ticked" in refused.json()["detail"]
    with sessions() as session:
        assert session.scalars(select(Study.id)).all() == [study]


def test_bad_filter_input_says_what_to_fix(setup: Any) -> None:
    client, _ = setup
    unknown = client.get("/studies.json", params={"run": "nope"})
    assert unknown.status_code == 404 and "unknown run 'nope'" in unknown.json()["detail"]
    verdict = client.get("/studies.json", params={"run": "fixture", "verdict": "great"})
    assert verdict.status_code == 422 and "verdict" in verdict.json()["detail"]
    assert "verdict must be one of" in verdict.json()["detail"]
    assert set(get_args(Verdict)) == {"", *VERDICTS}  # the query's values are the verdicts
    floor = client.get("/studies.json", params={"run": "fixture", "min_confidence": "2"})
    assert floor.status_code == 422 and "min_confidence must be 1" in floor.text


def test_an_annotator_gets_no_designer(setup: Any) -> None:
    client, _ = setup
    signed_out(client)
    signed_in(client, "annotator", "rater")
    page = client.get("/studies", params={"run": "fixture"}, headers=HTML)
    assert page.status_code == 200
    assert "Find latents" not in page.text and 'name="pick"' not in page.text


def test_the_list_is_capped_and_says_how_many_match(setup: Any) -> None:
    _, sessions = setup
    with sessions() as session:
        rows, matched = study_design.candidates(
            session, "fixture", methods="tfidf", min_confidence=0, limit=2
        )
    with_tfidf = [i for i in range(N_LATENTS) if tfidf_confidence(i) is not None]
    assert [r["latent"] for r in rows] == with_tfidf[:2] and matched == len(with_tfidf) == 15
