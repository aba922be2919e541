"""Accessibility in a real browser: axe-core (vendored, frontend/static/vendor/axe.min.js, MPL-2.0,
loaded from our own server so the Content-Security-Policy allows it) finds no serious or critical
violation on the home page, the latent list, a latent page, a user page, a study's rating page
and its results; and every button and slider on those pages has an accessible name."""

from __future__ import annotations

import re

import pytest

from core import studies
from core.settings import Settings
from core.store.engine import session_factory
from tests.backend.accounts import PASSWORD, create_account

pytestmark = pytest.mark.browser

AXE = """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
  .filter(v => v.impact === 'serious' || v.impact === 'critical')
  .map(v => ({id: v.id, impact: v.impact,
               nodes: v.nodes.slice(0, 3).map(n => n.html.slice(0, 160))}))"""


def _serious(page, path: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    page.goto(path)
    page.wait_for_load_state("load")
    page.add_script_tag(url="/static/vendor/axe.min.js")
    return page.evaluate(AXE)  # type: ignore[no-any-return]


def _sign_in(page, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login?next=/studies")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('form.login-form button[type="submit"]')
    page.wait_for_url("**/studies")


def test_no_serious_accessibility_violations(page, live_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    found: dict[str, object] = {}
    for path in ("/", "/runs/fixture/latents", "/runs/fixture/latents/0", "/runs/fixture/users/0"):
        found[path] = _serious(page, path)

    sessions = session_factory(live_settings.resolved_database_url)
    create_account(live_settings, "admin", "axe-lead")
    create_account(live_settings, "annotator", "axe-rater")
    study = studies.create_study(
        sessions, "fixture", "axe study", size=2, min_confidence=0.0, annotators=["axe-rater"]
    )
    _sign_in(page, "axe-rater")
    found["study rating"] = _serious(page, f"/studies/{study}/annotate")
    page.click("form.signout button")
    page.wait_for_url(re.compile(r"/$"))
    _sign_in(page, "axe-lead")
    found["study results"] = _serious(page, f"/studies/{study}/results")
    assert all(v == [] for v in found.values()), {k: v for k, v in found.items() if v}
