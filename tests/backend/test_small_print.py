"""The small print people read: moments in words ("14 Dec 2026, 01:12 UTC", never an ISO
string) on the invite and admin pages, and an action that needs an account disabled, with a
sign-in link, for a visitor signed out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi.testclient import TestClient

from backend.app import create_app
from backend.numbers import when
from core.settings import Settings
from core.store.engine import session_factory
from core.store.writes import publish_run
from tests.backend.accounts import signed_in
from tests.backend.factories import fixture_rows
from tests.backend.test_invites import make_invite

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def test_when_reads_like_a_date() -> None:
    moment = datetime(2026, 12, 14, 1, 12, 16, 588110, tzinfo=UTC)
    assert when(moment) == "14 Dec 2026, 01:12 UTC"
    assert when("2026-12-14T01:12:16.588110+00:00") == "14 Dec 2026, 01:12 UTC"
    assert when(datetime(2026, 3, 2, 9, 5)) == "2 Mar 2026, 09:05 UTC"  # naive: stored as UTC
    plus_two = datetime(2026, 12, 14, 3, 12, tzinfo=timezone(timedelta(hours=2)))
    assert when(plus_two) == "14 Dec 2026, 01:12 UTC"
    assert when(None) == "—" and when("not a date") == "not a date"


def test_invite_and_admin_pages_show_dates_in_words(published: Settings) -> None:
    with TestClient(create_app(published)) as admin:
        signed_in(admin, "admin", "small-print-admin")
        token = make_invite(admin)
        listing = admin.get("/admin/accounts").text
        assert not ISO.search(listing), ISO.search(listing)
        assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", listing)
    with TestClient(create_app(published)) as visitor:
        page = visitor.get(f"/invite/{token}").text
        until = re.search(r"until ([^<.]+)\.", page)
        assert until and re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", until[1])
        assert not ISO.search(page)


def _explain_button(html: str) -> Any:
    return re.search(r'<button type="button" class="explain-button"([^>]*)>', html)


def test_explain_is_disabled_with_a_sign_in_link_when_signed_out(published: Settings) -> None:
    with TestClient(create_app(published)) as client:
        page = client.get("/runs/fixture/latents/0", headers={"accept": "text/html"}).text
        button = _explain_button(page)
        assert button and "disabled" in button[1]
        assert 'href="/login?next=/runs/fixture/latents/0"' in page
        signed_in(client, "annotator", "small-print-rater")
        page = client.get("/runs/fixture/latents/0", headers={"accept": "text/html"}).text
        button = _explain_button(page)
        assert button and "disabled" not in button[1]


def test_top_terms_are_heaviest_first(fresh_settings: Settings) -> None:
    sessions = session_factory(fresh_settings.resolved_database_url)
    rows = fixture_rows()
    first = next(c for c in rows["concepts"] if c["latent_idx"] == 0 and c["method"] == "tfidf")
    first["terms"] = [["comedy", 0.218], ["romance", 0.135], ["einstein", 0.326]]  # as stored
    publish_run(sessions, **rows)
    with TestClient(create_app(fresh_settings)) as client:
        body = client.get("/runs/fixture/latents/0.json").json()
        page = client.get("/runs/fixture/latents/0", headers={"accept": "text/html"}).text
    terms = [c["terms"] for c in json_concepts(body) if c.get("method") == "tfidf"][0]
    assert [t[0] for t in terms] == ["einstein", "comedy", "romance"]
    assert re.search(r"top terms: einstein \(0\.326\), comedy \(0\.218\), romance", page)


def json_concepts(body: Any) -> list[dict[str, Any]]:
    """Every dict with "terms" anywhere in the latent page's JSON twin."""
    found: list[dict[str, Any]] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if "terms" in x:
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(body)
    return found
