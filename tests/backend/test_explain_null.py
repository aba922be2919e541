"""Issue 9 §2 for the live re-explanation: a web explanation gets a null (docs/method.md §1.11)
and "verified" is decided by ``core.reports.is_verified``; issue 9 §2 for the pages: each
confidence is shown beside its null. The LLM is a scripted OpenAI-compatible server on loopback
whose answers depend on the label asked about, so the null differs from the label's own score.

In the fixture (tests/backend/factories.py) latent 0's verification cases are its predicted item
one after the first of its history, its random cases two after: the scripted LLM tells them
apart the way a good label would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from core.settings import Settings
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.accounts import signed_in
from tests.backend.factories import fixture_rows
from tests.backend.jobs import result
from tests.worker.test_llm_client import Reply, chat_reply, scripted

__all__ = ["scripted"]

URL = "/api/runs/fixture/latents/0/explain"
OWN = "tense films"
NO_LIMITS = {"llm_rate_limit_per_minute": 0, "llm_explains_per_hour": 0, "llm_retries": 0}


def label_aware(
    own: str = OWN,
    *,
    null_right: bool = False,
    model: str = "scripted-model",
    null_delay_s: float = 0.0,
) -> Callable[[dict[str, Any]], Reply]:
    """Explain as ``own``; under ``own`` every case's level is right (confidence 1.0); under any
    other label (a null concept) every case gets 9: the positives right, the negatives wrong
    (0.5), or with ``null_right`` every case right too (1.0: a null as good as the label)."""

    def answer(payload: dict[str, Any]) -> Reply:
        content = payload["messages"][-1]["content"]
        if "Activations:" in content:
            return chat_reply(own, model)
        label = content.split("does is find ")[1].split("\n")[0]
        first = int(content.split("Sequence:\n")[1].split("\n")[0].split()[1])
        last = int(content.split("in the sequence:\n")[1].split("\n")[0].split()[1])
        positive = (last - first) % 12 == 1
        right = "9" if positive else "1"
        if label == own:
            return chat_reply(right, model)
        reply = chat_reply(right if null_right else "9", model)
        reply.delay_s = null_delay_s
        return reply

    return answer


# A null is a 5% test only with >= 19 draws (docs/method.md §1.11): the fixture's run is
# widened to 40 latents whose 20 LLM labels are all distinct, so latent 0 has 19 others.
N_OTHERS = 19


def many_labels_rows() -> dict[str, Any]:
    rows = fixture_rows(n_latents=2 * (N_OTHERS + 1))
    for concept in rows["concepts"]:
        if concept["method"] == "llm":
            concept["text"] = f"{concept['text']} {concept['latent_idx']}"
    for latent in rows["latents"]:
        if latent["llm_concept"]:
            latent["llm_concept"] = f"{latent['llm_concept']} {latent['idx']}"
    return rows


@pytest.fixture
def published(fresh_settings: Settings) -> dict[str, Any]:
    rows = many_labels_rows()
    publish_run(session_factory(fresh_settings.resolved_database_url), **rows)
    return rows


def client_for(settings: Settings, **llm: Any) -> TestClient:
    client = TestClient(create_app(settings.model_copy(update={**NO_LIMITS, **llm})))
    signed_in(client, "annotator")
    return client


def test_live_explanation_records_a_null_and_decides_with_is_verified(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(label_aware())
    with client_for(fresh_settings, llm_base_url=server.base_url) as client:
        body = result(client, URL)
        twin = client.get("/runs/fixture/latents/0.json").json()
    assert (body["text"], body["confidence"]) == (OWN, 1.0)
    null = body["details"]["null"]
    # the 19 other LLM labels (all distinct), each scored on latent 0's 2 + 2 cases
    assert sorted(e["latent"] for e in null["concepts"]) == list(range(2, 40, 2))
    assert [e["confidence"] for e in null["concepts"]] == [0.5] * N_OTHERS
    assert (body["null_p95"], body["null_n"], body["null_method"]) == (0.5, 19, "live")
    # none of the 19 reaches 1.0: r = 0, p = 1 / 20
    assert (null["r"], body["null_p"]) == (0, pytest.approx(0.05))
    assert body["verified"] is True and body["verdict"] == "verified"
    assert body["verdict_text"] == "confidence 1.00 · null p = 0.050 (n = 19) · verified"
    assert len(server.requests) == 1 + 4 + N_OTHERS * 4
    saved = twin["history"][0]
    assert (saved["id"], saved["null_p95"], saved["verified"]) == (body["id"], 0.5, True)


def test_live_explanation_no_better_than_its_null_is_not_verified(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    """Found: a re-explanation at 0.71 was shown "verified" — the check could not tell a label
    that fits every latent from a real one. Here the label scores 1.0, but so does every other
    latent's label on the same cases."""
    server = scripted(label_aware(null_right=True))
    with client_for(fresh_settings, llm_base_url=server.base_url) as client:
        body = result(client, URL)
        html = client.get("/runs/fixture/latents/0", headers={"accept": "text/html"}).text
    assert (body["confidence"], body["null_p95"]) == (1.0, 1.0)
    assert body["verified"] is False and body["verdict"] == "not verified over null"
    assert "null p95 1.00" in html and "not verified over null" in html


def test_null_past_the_budget_saves_the_explanation_without_a_null_never_verified(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    budget_s = 2.0  # RECSAE_JOB_BUDGET_MIN is in minutes: 2 s here
    server = scripted(label_aware(null_delay_s=1.0))  # 19 x 4 null answers, 4 at a time: 19 s
    settings = {"llm_base_url": server.base_url, "job_budget_min": budget_s / 60}
    with client_for(fresh_settings, **settings) as client:
        started = time.monotonic()
        body = result(client, URL)
        elapsed = time.monotonic() - started
        twin = client.get("/runs/fixture/latents/0.json").json()
    assert elapsed < budget_s + 1.5
    assert body["confidence"] == 1.0 and "null" not in body["details"]
    assert (
        "did not finish within the job's budget of 2 s (RECSAE_JOB_BUDGET_MIN)"
        in body["null_missing"]
    )
    assert body["verified"] is False and body["verdict"] == "no null: not verified"
    saved = twin["history"][0]
    assert (saved["id"], saved["verified"], saved["null_p95"]) == (body["id"], False, None)
    assert saved["verdict"] == "no null: not verified"


def test_stored_null_is_reused_only_when_the_same_model_made_it(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    server = scripted(label_aware())
    other_model = scripted(label_aware(model="another-model"))
    with client_for(fresh_settings, llm_base_url=server.base_url) as client:
        first = result(client, URL)
        asked = len(server.requests)
        again = result(client, URL)
    assert first["null_method"] == "live"
    assert again["null_method"] == "reused"
    assert again["details"]["null"]["from_concept"] == first["id"]
    assert len(server.requests) - asked == 1 + 4  # explain and verify: the null costs nothing
    assert (again["null_p95"], again["verified"]) == (0.5, True)
    with client_for(fresh_settings, llm_base_url=other_model.base_url) as client:
        third = result(client, URL)
    assert third["model"] == "another-model" and third["null_method"] == "live"
    assert len(other_model.requests) == 1 + 4 + N_OTHERS * 4


def _publish_with_null(
    settings: Settings, confidence: float, null_p95: float, p: float = 0.05, n: int = 19
) -> None:
    rows = fixture_rows()
    for concept in rows["concepts"]:
        if (concept["latent_idx"], concept["method"]) == (0, "llm"):
            concept["confidence"] = confidence
            null = {"p95": null_p95, "mean": 0.62, "median": 0.6, "n": n, "p": p, "seed": 0}
            concept["details"] = {"null": null}
    rows["latents"][0]["llm_confidence"] = confidence
    publish_run(session_factory(settings.resolved_database_url), **rows)


def test_latent_json_twin_carries_each_concepts_null(fresh_settings: Settings) -> None:
    _publish_with_null(fresh_settings, 0.95, 0.61)
    with client_for(fresh_settings) as client:
        twin = client.get("/runs/fixture/latents/0.json").json()
    llm = twin["concepts"]["llm"]
    assert (llm["confidence"], llm["null_p95"], llm["null_mean"], llm["null_n"]) == (
        0.95, 0.61, 0.62, 19
    )  # fmt: skip
    assert llm["null_p"] == 0.05
    assert llm["verified"] is True and llm["null_method"] == "permutation"
    history = {h["method"]: h for h in twin["history"]}
    assert (history["llm"]["null_p95"], history["llm"]["null_n"]) == (0.61, 19)
    assert history["tfidf"]["null_p95"] is None  # the fixture's TF-IDF concepts have no null


def test_confidence_above_0_8_but_not_above_its_null_p95_shows_not_verified(
    fresh_settings: Settings,
) -> None:
    """Found: the explanation history marked a 0.44 concept "verified", and a label fitting any
    latent passed at 0.8+. A 0.85 whose null rejects only at p = 0.3 is not verified, on every
    view."""
    _publish_with_null(fresh_settings, 0.85, 0.9, p=0.3)
    with client_for(fresh_settings) as client:
        html = client.get("/runs/fixture/latents/0", headers={"accept": "text/html"}).text
        twin = client.get("/runs/fixture/latents/0.json").json()
    card = html.split('data-method="llm"')[1].split("</div>")[0]
    assert "confidence" in card and "0.85" in card and "null p95 0.90" in card
    assert "not verified over null" in card
    history = html.split('<section class="history">')[1]
    assert "0.85" in history and "0.90" in history and "not verified over null" in history
    assert twin["concepts"]["llm"]["verified"] is False
    assert twin["concepts"]["llm"]["verdict"] == "not verified over null"
    assert "85%" not in html  # one way of writing a confidence: 0.85


def test_a_degenerate_web_explanation_stays_in_the_history_and_never_becomes_current(
    fresh_settings: Settings, published: dict[str, Any], scripted: Callable
) -> None:
    """Found: "the movie's plot and find the movie's plot's plot's..." became latent #78's
    current LLM concept ("confidence —", no verdict). A label that names nothing is kept with
    its reason and the latent keeps showing its earlier concept (docs/method.md §1.11)."""
    # a label that fits any latent, given twice (asked once more after the first): degenerate.
    # Latent 1 has no LLM concept yet (as #78 had none), latent 0 has one.
    server = scripted(lambda payload: chat_reply("the movie"))
    with client_for(fresh_settings, llm_base_url=server.base_url) as client:
        before = client.get("/runs/fixture/latents/0.json").json()["concepts"]["llm"]
        bodies = [result(client, f"/api/runs/fixture/latents/{i}/explain") for i in (0, 1)]
        twins = [client.get(f"/runs/fixture/latents/{i}.json").json() for i in (0, 1)]
        listed = client.get("/runs/fixture/latents.json?method=llm&_size=100").json()
        html = client.get("/runs/fixture/latents/1", headers={"Accept": "text/html"}).text
    for body, twin in zip(bodies, twins, strict=True):
        assert body["status"] == "degenerate" and body["verdict"] == "degenerate: names nothing"
        newest = twin["history"][0]
        assert (newest["id"], newest["status"]) == (body["id"], "degenerate")
        assert newest["rejected"] and newest["rejected"][0]["reason"]
    assert before["text"] == "films about horror 0"
    assert twins[0]["concepts"]["llm"]["text"] == before["text"]
    assert twins[0]["concepts"]["llm"]["confidence"] == before["confidence"]
    assert twins[1]["concepts"]["llm"]["text"] is None  # still no current LLM concept
    assert 1 not in [r["idx"] for r in listed["latents"]]  # method=llm: it has none
    # The rejected label is set apart (small, muted, labelled "rejected"), never the large type of
    # a concept, with its reason as a sentence (both times generic: "so is the one given...").
    card = re.search(r'data-method="llm">(.*?)</div>', html, re.S)
    assert card is not None and 'class="concept-text"' not in card[1]
    rejected = re.search(r'<p class="rejected-label small muted">(.*?)</p>', card[1], re.S)
    assert rejected is not None and '<span class="flag rejected">rejected</span>' in rejected[1]
    assert "“the movie”" in rejected[1]
    assert (
        "the label is generic, and so is the one given after being told so: it names nothing"
        in rejected[1]
    )
    assert "the label generic" not in html and "once more after being told" not in html
    assert "rejected</span> “the movie”: the label is generic" in html  # the history's entries


def test_the_list_badge_and_filter_follow_the_verdict(fresh_settings: Settings) -> None:
    """docs/method.md §1.11: latents 0 and 2 both show an LLM confidence >= 0.8; only 0's null
    rejects (p = 0.05, n = 19), 2's does not (p = 0.3). The badge differs and verified=true
    keeps 0 alone."""
    rows = fixture_rows()
    nulls = {0: {"p": 0.05, "n": 19}, 2: {"p": 0.3, "n": 19}}
    for concept in rows["concepts"]:
        if concept["method"] == "llm" and concept["latent_idx"] in nulls:
            concept["confidence"] = 0.9
            concept["details"] = {"null": {**nulls[concept["latent_idx"]], "p95": 0.7}}
    publish_run(session_factory(fresh_settings.resolved_database_url), **rows)
    from core.store.engine import session_factory as factory
    from core.store.writes import refresh_latent_summary

    with factory(fresh_settings.resolved_database_url).begin() as session:
        for idx in nulls:
            refresh_latent_summary(session, "fixture", idx)
    with client_for(fresh_settings) as client:
        every = client.get("/runs/fixture/latents.json?method=llm&_size=100").json()
        verified = client.get("/runs/fixture/latents.json?method=llm&verified=true").json()
        others = client.get("/runs/fixture/latents.json?method=llm&verified=false").json()
        html = client.get(
            "/runs/fixture/latents?method=llm&_size=100", headers={"accept": "text/html"}
        ).text
    by_idx = {r["idx"]: r for r in every["latents"]}
    assert (by_idx[0]["llm_verdict_code"], by_idx[2]["llm_verdict_code"]) == (
        "verified", "not_over_null"
    )  # fmt: skip
    assert (by_idx[0]["llm_null_p"], by_idx[0]["llm_null_n"]) == (0.05, 19)
    assert [r["idx"] for r in verified["latents"]] == [0]
    assert 0 not in [r["idx"] for r in others["latents"]]
    assert 2 in [r["idx"] for r in others["latents"]]
    assert len(others["latents"]) == every["total"] - 1
    row0 = html.split('href="/runs/fixture/latents/0"')[1].split("</tr>")[0]
    row2 = html.split('href="/runs/fixture/latents/2"')[1].split("</tr>")[0]
    assert 'data-verdict="verified"' in row0 and "verdict-verified" in row0
    assert 'data-verdict="not_over_null"' in row2 and "verdict-verified" not in row2
    assert "not verified over null" in row2


def test_a_reason_stored_in_the_old_wording_is_shown_as_a_sentence() -> None:
    """Runs published before the reason was a sentence stored "the label generic, and once more
    after being told (repeats itself): ..."; it is recomposed from the stored rejected labels."""
    from backend.nulls import trust

    details = {
        "reason": (
            "the label generic, and once more after being told (repeats itself): "
            "it names nothing, so it is not verified"
        ),
        "rejected": [
            {"text": "the movie", "reason": "generic"},
            {"text": "plot plot plot", "reason": "repeats itself"},
        ],
    }
    shown = trust(None, details, "degenerate")
    assert shown["reason"] == (
        "the label is generic, and the one given after being told so repeats itself: "
        "it names nothing, so it is not verified"
    )
    assert [r["why"] for r in shown["rejected"]] == [
        "the label is generic",
        "the label repeats itself",
    ]
