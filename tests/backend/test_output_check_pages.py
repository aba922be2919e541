"""The output check on the explorer (docs/method.md §1.9, "Output check"): the latent list's
``output`` filter and column, the latent page's sentence and its JSON twin, "add a latent by
concept" ranking confirmed latents first, and the run report's share of verified concepts
confirmed on output, SAE vs Base. Checks are written into the fixture run's rows as publish
writes them (``concepts.output``, ``latents.<method>_output``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.app import create_app
from core.settings import Settings
from core.store import browse
from core.store.engine import session_factory
from core.store.schema import Concept, Latent, Run
from core.store.writes import add_concept


def _record(verdict: str, mode: str = "active", n: int = 143, n_active: int = 143) -> dict:
    return {
        "verdict": verdict, "mode": mode, "n_users": n, "n_active": n_active, "scale": 5.0,
        "share_before": 0.12, "share_boosted": 0.31, "share_suppressed": 0.04,
        "boosted_change": 0.19, "boosted_ci": [0.12, 0.26],
        "suppressed_change": -0.08, "suppressed_ci": [-0.10, -0.06],
    }  # fmt: skip


# latent -> (method, record): 5 'horror' confirmed, 0 'horror' refuted on every user, 1 too
# few, 2's LLM concept confirmed; every other latent not checked
CHECKS: dict[int, tuple[str, dict[str, Any]]] = {
    5: ("tfidf", _record("confirmed")),
    0: ("tfidf", _record("refuted", "inactive_set", 203, 4)),
    1: ("tfidf", {"verdict": "too_few", "mode": "inactive_set", "n_users": 12, "n_active": 0}),
    2: ("llm", _record("confirmed")),
}
OUTPUT_REPORT = {
    "sae": {"verified": 40, "verified_confirmed": 11, "confirmed_share": 0.275, "checked": 900,
            "verdicts": {"confirmed": 300, "refuted": 590, "too_few": 10},
            "modes": {"active": 30, "inactive_set": 870}},
    "base": {"verified": 8, "verified_confirmed": 2, "confirmed_share": 0.25, "checked": 60,
             "verdicts": {"confirmed": 20, "refuted": 40, "too_few": 0},
             "modes": {"active": 10, "inactive_set": 50}},
    "n_users": 203, "scale": 5.0, "min_users": 20, "seconds": 12.0,
}  # fmt: skip


@pytest.fixture
def checked(published: Settings) -> Settings:
    sessions = session_factory(published.resolved_database_url)
    with sessions.begin() as session:
        for idx, (method, record) in CHECKS.items():
            session.execute(
                update(Latent)
                .where(Latent.run_id == "fixture", Latent.idx == idx)
                .values({f"{method}_output": record["verdict"]})
            )
            session.execute(
                update(Concept)
                .where(Concept.run_id == "fixture", Concept.latent_idx == idx)
                .where(Concept.method == method)
                .values(output=record)
            )
        run = session.get(Run, "fixture")
        assert run is not None
        metrics = dict(run.metrics)
        metrics["report"] = {**metrics.get("report", {}), "output_check": OUTPUT_REPORT}
        run.metrics = metrics
    return published


@pytest.fixture
def client(checked: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(checked)) as c:
        yield c


def _idxs(client: TestClient, query: str) -> set[int]:
    response = client.get(f"/runs/fixture/latents.json?_size=100&{query}")
    assert response.status_code == 200, response.text
    return {lat["idx"] for lat in response.json()["latents"]}


def test_the_list_filters_on_the_output_check(client: TestClient) -> None:
    assert _idxs(client, "output=confirmed") == {5, 2}
    assert _idxs(client, "output=confirmed&method=tfidf") == {5}
    assert _idxs(client, "output=confirmed&method=llm") == {2}
    assert _idxs(client, "output=refuted") == {0}
    assert _idxs(client, "output=too_few") == {1}
    assert len(_idxs(client, "output=")) == 20  # an empty field: no filter
    bad = client.get("/runs/fixture/latents.json?output=yes")
    assert bad.status_code == 422
    assert all(word in bad.text for word in ("output", "confirmed", "refuted", "too_few"))
    rows = {
        r["idx"]: r for r in client.get("/runs/fixture/latents.json?_size=100").json()["latents"]
    }
    assert rows[5]["tfidf_output"] == "confirmed" and rows[7]["tfidf_output"] is None
    assert rows[0]["tfidf_output_label"] == "not confirmed on output"
    html = client.get("/runs/fixture/latents?output=confirmed").text
    assert 'class="output output-confirmed"' in html and 'value="confirmed" selected' in html


def test_the_latent_page_says_what_steering_did(client: TestClient) -> None:
    page = client.get("/runs/fixture/latents/5.json").json()
    tfidf = page["concepts"]["tfidf"]
    assert tfidf["output_verdict"] == "confirmed" and tfidf["output"]["n_users"] == 143
    assert tfidf["output_text"] == (
        "boosting ×5 raises ‘horror’ in the top 10 from 12% to 31% (change [+12, +26] points, "
        "95% CI); suppressing ×−5 lowers it to 4% ([-10, -6]) — confirmed on output "
        "(n = 143 active evaluation users)"
    )
    assert tfidf["output_text"] in client.get("/runs/fixture/latents/5").text
    refuted = client.get("/runs/fixture/latents/0.json").json()["concepts"]["tfidf"]
    assert refuted["output_verdict"] == "refuted"
    assert refuted["output_text"].endswith(
        "not confirmed on output (n = 203 evaluation users; the latent is active for 4 of them, "
        "so the others had it set to ±5 × its mean activation)"
    )
    few = client.get("/runs/fixture/latents/1.json").json()["concepts"]["tfidf"]
    assert few["output_text"].startswith("too few users to check on output (n = 12")
    unchecked = client.get("/runs/fixture/latents/6.json").json()["concepts"]["tfidf"]
    assert unchecked["output_verdict"] is None
    assert unchecked["output_text"].startswith("not checked on output")
    history = client.get("/runs/fixture/latents/2.json").json()["history"]
    assert [c["output_verdict"] for c in history if c["method"] == "llm"] == ["confirmed"]


def test_add_a_latent_by_concept_ranks_confirmed_first(checked: Settings) -> None:
    sessions = session_factory(checked.resolved_database_url)
    with sessions() as session:
        rows, total = browse.search_by_concept(session, "fixture", "HORROR")
        plain, _ = browse.search_by_concept(session, "fixture", "comedy")
    # 'horror' latents (15's concept has no confidence, so no text): 0 (TF-IDF 0.0, refuted),
    # 5 (0.5, confirmed), 10 (0.0, not checked); by confidence alone 5, 0, 10 would tie-break
    # 0 before 10 but could not put 0 before a more confident unchecked latent
    assert total == 3
    assert [r.idx for r in rows] == [5, 0, 10]
    # comedy: 1 (too few, 0.1), 6 (0.6), 16 (0.6): too few before not checked, then confidence
    assert [r.idx for r in plain] == [1, 6, 16]


def test_the_report_gives_the_share_confirmed_sae_vs_base(client: TestClient) -> None:
    report = client.get("/runs/fixture.json").json()["report"]["output"]
    rows = {r["label"]: r["cells"] for r in report["rows"]}
    assert set(rows) == {"TF-IDF · SAE", "TF-IDF · Base"}
    assert [c["value"] for c in rows["TF-IDF · SAE"][:3]] == [40, 11, 0.275]
    assert [c["value"] for c in rows["TF-IDF · Base"][:3]] == [8, 2, 0.25]
    assert "Confirmed on output" in client.get("/runs/fixture").text


def test_a_new_explanation_is_not_checked_until_republished(checked: Settings) -> None:
    """A web re-explanation that becomes the latent's LLM concept has no output check: the
    latent's verdict reads NULL (not checked), not the old concept's "confirmed"."""
    sessions = session_factory(checked.resolved_database_url)
    add_concept(
        sessions,
        dict(
            run_id="fixture",
            latent_idx=2,
            method="llm",
            text="slow-burn romance",
            terms=[],
            confidence=0.99,
            status="verified",
            model="m",
            details={},
        ),  # fmt: skip
    )
    with sessions() as session:
        latent = session.get(Latent, ("fixture", 2))
        assert latent is not None
        assert (latent.llm_concept, latent.llm_output) == ("slow-burn romance", None)


def test_the_user_pages_search_ranks_confirmed_first(client: TestClient) -> None:
    # the route "add a latent by concept" calls, in the store test's order: 'comedy' by
    # confidence alone would be 6, 16 (0.6) before 1 (0.1, too few users: ranked first)
    rows = []
    for q in ("horror", "comedy"):
        response = client.get(f"/api/runs/fixture/steer/latents?q={q}")
        assert response.status_code == 200, response.text
        rows.append(response.json()["latents"])
    assert [r["latent"] for r in rows[0]] == [5, 0, 10]
    assert [r["tfidf_output"] for r in rows[0]] == ["confirmed", "refuted", None]
    assert [r["latent"] for r in rows[1]] == [1, 6, 16]
