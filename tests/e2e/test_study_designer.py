"""The study designer in a real browser (docs/method.md §5): an admin finds latents by concept
text, methods and confidence floor, unticks one of those found, and creates the study from the
rest; the study page lists exactly the ticked latents. axe-core finds no serious or critical
violation on the designer with its list. Expected latents come from the factory's
rules (tests/backend/factories.py)."""

from __future__ import annotations

import re

import pytest

from core.settings import Settings
from tests.backend.accounts import PASSWORD, create_account
from tests.backend.factories import CONCEPTS, tfidf_confidence
from tests.e2e.test_axe import AXE

pytestmark = pytest.mark.browser
N_LATENTS = 20  # the factory run's

# The factory's latents with a TF-IDF concept "horror" (any confidence): 0, 5 and 10.
HORROR = [
    i
    for i in range(N_LATENTS)
    if tfidf_confidence(i) is not None and CONCEPTS[i % len(CONCEPTS)] == "horror"
]


def test_admin_filters_latents_and_creates_a_study_from_the_ticked(
    page, live_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    assert HORROR == [0, 5, 10]
    create_account(live_settings, "admin", "e2e-designer")
    page.goto("/login?next=/studies")
    page.fill('input[name="username"]', "e2e-designer")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form.login-form button[type="submit"]')
    page.wait_for_url("**/studies")

    # The filter's controls are found by their labels (what a screen reader announces).
    page.get_by_label("Search run").select_option("fixture")
    page.get_by_label("Concept contains").fill("HORROR")
    page.get_by_label("Methods").select_option("tfidf")
    page.get_by_label("Confidence at least").fill("0")
    page.get_by_role("button", name="Find latents").click()
    page.wait_for_url(re.compile(r"/studies\?run=fixture&q=HORROR&methods=tfidf"))
    expect(page.locator("#candidates-count")).to_contain_text("3 latents of fixture match")
    boxes = page.locator('#candidates input[name="pick"]')
    assert boxes.evaluate_all("els => els.map(e => [e.value, e.checked])") == [
        [str(i), True] for i in HORROR
    ]
    page.add_script_tag(url="/static/vendor/axe.min.js")  # every control labelled, and more
    assert page.evaluate(AXE) == []

    page.get_by_label("rate latent #5").uncheck()
    page.fill('form.new-study input[name="name"]', "horror picks")
    page.click('form.new-study button[type="submit"]')
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    sampled = page.locator("#sampled a").evaluate_all(
        "els => els.map(e => e.textContent.trim()).filter(t => /^#\\d+$/.test(t))"
    )
    assert sorted(sampled) == ["#0", "#10"], sampled
