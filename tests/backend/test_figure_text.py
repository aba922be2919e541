"""Bidi and control characters in the data a page hands its scripts as JSON (plotly figures'
hover labels and ticks, "why this item"): spelled out as ``[U+202E]``, as every printed value is
(core/safe_text.py, docs/architecture.md "Text from people and LLMs"); plotly draws text as it
is, so a title holding U+202E would read reversed in a hover label. The JSON twins are data and
keep the text as stored."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.app import create_app
from backend.steering import clear_cache
from core import studies
from core.store.schema import Concept, Item, Latent
from tests.backend.accounts import create_account, signed_in
from tests.backend.synthetic_run import steerable_run

RUN = "bidi-figures"
HTML = {"accept": "text/html"}
RLO, BEL = "\u202e", "\x07"  # RIGHT-TO-LEFT OVERRIDE ("Trojan Source"), a control character


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings, _ = steerable_run(tmp_path_factory.mktemp("bidi"), RUN, seed=5)
    clear_cache()
    with TestClient(create_app(settings)) as c:
        sessions = c.app.state.sessions  # type: ignore[attr-defined]
        with sessions.begin() as session:
            session.execute(
                update(Item).where(Item.run_id == RUN).values(title=f"txt{RLO}gnp.exe {BEL}")
            )
            concept = f"moc{RLO}.evil"
            session.execute(
                update(Latent)
                .where(Latent.run_id == RUN, Latent.tfidf_concept.is_not(None))
                .values(tfidf_concept=concept, llm_concept=concept)
            )
        yield c


def embedded(page: str, element_id: str) -> Any:
    """The JSON a page embeds in ``<script type="application/json" id=element_id>``, parsed
    (what the page's script hands plotly)."""
    found = re.search(
        rf'<script type="application/json" id="{re.escape(element_id)}">(.*?)</script>', page, re.S
    )
    assert found is not None, f"no #{element_id} on the page"
    return json.loads(found.group(1))


def strings(value: Any) -> list[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_item_titles_and_concepts_in_the_why_chart_data_are_spelled_out(
    client: TestClient,
) -> None:
    page = client.get(f"/runs/{RUN}/users/1", headers=HTML)
    assert page.status_code == 200
    texts = strings(embedded(page.text, "why-data"))
    assert not [t for t in texts if RLO in t or BEL in t]
    assert "txt[U+202E]gnp.exe [U+0007]" in texts  # each item's title, as the chart gets it
    assert any(t.startswith("moc[U+202E].evil") for t in texts)  # a bar's concept
    # The JSON twin is data: it keeps the text as stored.
    twin = client.get(f"/runs/{RUN}/users/1.json").json()
    assert f"txt{RLO}gnp.exe {BEL}" in strings(twin)


def test_concepts_in_the_study_results_figure_are_spelled_out(app_client: TestClient) -> None:
    """On the fixture run (tests/backend/factories.py), whose concepts are rows of their own."""
    client = app_client
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    with sessions.begin() as session:
        session.execute(
            update(Concept).where(Concept.run_id == "fixture").values(text=f"moc{RLO}.evil")
        )
    rater = create_account(sessions, "annotator")
    study_id = studies.create_study(
        sessions, "fixture", "bidi", size=3, min_confidence=0.0, methods="tfidf",
        annotators=[rater.username],
    )  # fmt: skip
    for position in range(3):
        studies.rate_at(sessions, study_id, rater.id, position, 3)
    signed_in(client, "admin")
    page = client.get(f"/studies/{study_id}/results", headers=HTML)
    assert page.status_code == 200, page.text[:300]
    figure = embedded(page.text, "fig-human-data")
    hover = [t for trace in figure["data"] for t in trace["text"]]
    assert len(hover) == 3 and all("moc[U+202E].evil" in t for t in hover), hover
    assert not [t for t in strings(figure) if RLO in t]
