"""Human evaluation as people read it (docs/method.md §5): "both" methods rates both concepts
of latents that have both, the admin's study page lists what was sampled, raters see each
example's genres and tags beside its title, and a finished annotator reads "12 rated,
1 skipped — done" without a "Continue annotating" button."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from core import studies
from core.settings import Settings
from core.store.engine import session_factory
from core.store.schema import Account, StudyItem
from tests.backend.accounts import create_account, signed_in
from tests.backend.factories import llm_confidence, publish_fixture, tfidf_confidence

HTML = {"accept": "text/html"}


@pytest.fixture
def setup(fresh_settings: Settings) -> Iterator[tuple[TestClient, Any, dict[str, Any]]]:
    sessions = session_factory(fresh_settings.resolved_database_url)
    rows = publish_fixture(sessions)
    with TestClient(create_app(fresh_settings)) as client:
        yield client, sessions, rows


def _items(sessions: Any, study_id: int) -> list[StudyItem]:
    with sessions() as session:
        return list(session.scalars(select(StudyItem).filter_by(study_id=study_id)))


def test_both_methods_rates_both_concepts_of_latents_that_have_both(setup: Any) -> None:
    _, sessions, rows = setup
    n = len(rows["latents"])
    # Brute force over the factory's own rule: which latents have a concept of each method.
    has_both = {
        i for i in range(n) if tfidf_confidence(i) is not None and llm_confidence(i) is not None
    }
    assert 4 <= len(has_both) < n
    for seed in range(3):
        study = studies.create_study(
            sessions, "fixture", f"both {seed}", size=4, min_confidence=0.0, methods="both",
            seed=seed,
        )  # fmt: skip
        items = _items(sessions, study)
        latents = {i.latent_idx for i in items}
        assert len(latents) == 4 and latents <= has_both, (seed, latents)
        assert sorted(i.method for i in items) == ["llm"] * 4 + ["tfidf"] * 4


def test_admin_sees_the_sampled_items_raters_do_not(setup: Any) -> None:
    client, sessions, _ = setup
    create_account(sessions, "annotator", "pages-rater")
    study = studies.create_study(
        sessions, "fixture", "listed", size=3, min_confidence=0.0, methods="both",
        annotators=["pages-rater"],
    )  # fmt: skip
    items = sorted(_items(sessions, study), key=lambda i: i.position)
    signed_in(client, "admin", "pages-admin")
    page = client.get(f"/studies/{study}", headers=HTML).text
    table = re.search(r'<table class="list" id="sampled">(.*?)</table>', page, re.S)
    assert table, page[-2000:]
    shown = re.findall(
        r'<td class="num">(\d+)</td><td class="num"><a href="[^"]+">#(\d+)</a></td>'
        r"<td>([^<]+)</td><td>([^<]+)</td>",
        table[1],
    )
    words = {"tfidf": "TF-IDF", "llm": "LLM"}
    assert shown == [
        (str(i.position + 1), str(i.latent_idx), words[i.method], i.text) for i in items
    ]
    signed_in(client, "annotator", "pages-rater2")
    studies.assign(sessions, study, ["pages-rater2"])
    assert 'id="sampled"' not in client.get(f"/studies/{study}", headers=HTML).text


def test_raters_see_genres_and_tags_beside_titles(setup: Any) -> None:
    client, sessions, rows = setup
    study = studies.create_study(sessions, "fixture", "fields", size=2, min_confidence=0.0)
    described = {it["title"]: it for it in rows["items"]}
    item = _items(sessions, study)[0]
    assert item.shown
    checked = 0
    for ex in item.shown["construction"] + item.shown["verification"]:
        fields = described[ex["predicted"]]
        for genre in fields["genres"]:
            assert genre in ex["predicted_about"]
        assert "tags: " + ", ".join(fields["tags"][:5]) in ex["predicted_about"]
        for title, about in zip(ex["history"], ex["history_about"], strict=True):
            assert all(g in about for g in described[title]["genres"])
        checked += 1
    assert checked
    signed_in(client, "annotator", "fields-rater")
    studies.assign(sessions, study, ["fields-rater"])
    page = client.get(f"/studies/{study}/annotate?n=0", headers=HTML).text
    at_0 = next(i for i in _items(sessions, study) if i.position == 0)
    assert at_0.shown and at_0.shown["construction"]
    assert html.escape(at_0.shown["construction"][0]["predicted_about"]) in page


def test_a_finished_annotator_reads_done_with_skips_counted_apart(setup: Any) -> None:
    client, sessions, _ = setup
    signed_in(client, "annotator", "done-rater")
    with sessions() as session:
        me = session.scalar(select(Account).filter_by(username="done-rater"))
        assert me is not None
        my_id = me.id
    study = studies.create_study(
        sessions, "fixture", "finish", size=3, min_confidence=0.0, methods="tfidf",
        annotators=["done-rater"],
    )  # fmt: skip
    total = len(_items(sessions, study))
    studies.rate_at(sessions, study, my_id, 0, 3)
    page = client.get(f"/studies/{study}", headers=HTML).text
    assert f"1 rated of {total}" in page and 'id="start"' in page and "Continue" in page
    studies.rate_at(sessions, study, my_id, 1, None, "examples unclear")
    for position in range(2, total):
        studies.rate_at(sessions, study, my_id, position, 2)
    page = client.get(f"/studies/{study}", headers=HTML).text
    assert f"{total - 1} rated, 1 skipped — done" in page
    assert 'id="start"' not in page and "Continue annotating" not in page


def test_the_designer_picks_latents_by_list(setup: Any) -> None:
    """docs/method.md §5: a study of the latents listed in the form (in place of the random
    sample), each once; a latent that does not exist or has no qualifying concept, or a word
    that is no number, refuses the list saying which, and nothing is written."""
    client, sessions, rows = setup
    n = len(rows["latents"])
    with_tfidf = [i for i in range(n) if tfidf_confidence(i) is not None]
    without = next(i for i in range(n) if tfidf_confidence(i) is None)
    pick = [with_tfidf[-1], with_tfidf[0], with_tfidf[2]]
    signed_in(client, "admin", "designer")
    listed = f"{pick[0]}, {pick[1]}\n{pick[2]} {pick[0]}"
    form = {"run_id": "fixture", "name": "chosen", "size": "2", "min_confidence": "0",
            "methods": "tfidf", "latents": listed}  # fmt: skip
    made = client.post("/studies", data=form, follow_redirects=False)
    assert made.status_code == 303, made.text
    study = int(made.headers["location"].rsplit("/", 1)[1])
    items = _items(sessions, study)
    assert sorted(i.latent_idx for i in items) == sorted(pick)  # not a sample of 2; 1 each
    assert {i.method for i in items} == {"tfidf"}
    page = client.get(f"/studies/{study}", headers=HTML).text
    for idx in pick:
        assert f">#{idx}</a>" in page
    refusals = {
        f"{pick[0]}, {without}": f"latent {without} has no tfidf concept",
        f"{pick[0]}, {n}": f"there is no latent {n}",
    }
    for bad, says in refusals.items():
        refused = client.post("/studies", data={**form, "latents": bad})
        assert refused.status_code == 400 and says in refused.json()["detail"], refused.text
    words = client.post("/studies", data={**form, "latents": "3, seven"})
    assert words.status_code == 422 and "latents" in words.json()["detail"]
    with sessions() as session:
        assert session.scalars(select(StudyItem.study_id).distinct()).all() == [study]
