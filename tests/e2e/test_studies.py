"""Human evaluation in a real browser (issue 10): an admin creates a study by its form, an
annotator signs in and rates three latents with the keyboard alone (1–4, Backspace back), and
the admin's results page shows the ratings."""

from __future__ import annotations

import re

import pytest

from core.settings import Settings
from tests.backend.accounts import PASSWORD, create_account

pytestmark = pytest.mark.browser


def sign_in(page, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login?next=/studies")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('form.login-form button[type="submit"]')
    page.wait_for_url("**/studies")


def test_admin_creates_annotator_rates_with_keys_admin_sees_results(
    page, live_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    create_account(live_settings, "admin", "e2e-lead")
    create_account(live_settings, "annotator", "e2e-rater")

    sign_in(page, "e2e-lead")
    page.fill('form.new-study input[name="name"]', "keyboard study")
    page.fill('form.new-study input[name="size"]', "3")
    page.select_option('form.new-study select[name="methods"]', "tfidf")
    page.fill('form.new-study input[name="annotators"]', "e2e-rater")
    page.click('form.new-study button[type="submit"]')
    page.wait_for_url(re.compile(r"/studies/\d+$"))
    study_url = page.url
    assert "e2e-rater" in page.inner_text("main")
    page.click("form.signout button")
    page.wait_for_url("**/")

    sign_in(page, "e2e-rater")
    page.click("text=annotate")
    page.wait_for_url(re.compile(r"/annotate"))
    concept = page.inner_text("#concept")
    assert "confidence" not in page.inner_text("main").lower()

    page.keyboard.press("3")
    page.wait_for_url(re.compile(r"annotate\?n=1$"))
    page.keyboard.press("Backspace")  # back to the first item: one's own rating shows
    page.wait_for_url(re.compile(r"annotate\?n=0$"))
    assert page.inner_text("#concept") == concept and "Your rating: 3" in page.inner_text("#mine")
    page.keyboard.press("4")  # changed while the study is open
    page.wait_for_url(re.compile(r"annotate\?n=1$"))
    assert "1 of 3 rated" in page.inner_text("#progress-text")
    page.keyboard.press("2")
    page.wait_for_url(re.compile(r"annotate\?n=2$"))
    page.keyboard.press("1")
    page.wait_for_url(study_url)  # the last item leads back to the study
    assert "3 rated — done" in page.inner_text("main")
    page.goto(f"{study_url}/annotate?n=0")  # S: skip with a reason, from the keyboard
    page.keyboard.press("s")
    page.keyboard.type("examples unclear")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"annotate\?n=1$"))
    page.click("form.signout button")
    page.wait_for_url("**/")

    sign_in(page, "e2e-lead")
    page.goto(f"{study_url}/results")
    per_method = page.inner_text("#per-method")
    assert re.search(r"TF-IDF\s+1\.5\s+2\s+1\s+1\s+1\s+0\s+0", per_method), per_method
    assert page.locator("#human-vs-automatic tbody tr").count() == 3  # three latents
    page.locator("#fig-human .main-svg").first.wait_for(state="attached")
