"""Invite links in a real browser (issue 10 §1): an admin creates a single-use link for a study
on /admin/accounts, a fresh browser context (no cookies) opens it, signs up, and lands signed
in on the assigned study; the same link, opened again, is refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page

from core import studies
from core.settings import Settings
from core.store.engine import session_factory
from tests.backend.accounts import PASSWORD, create_account
from tests.e2e.conftest import guarded_page

pytestmark = pytest.mark.browser


def test_admin_invites_a_stranger_who_signs_up_onto_the_study(
    page: Page, browser: object, live_server: str, live_settings: Settings
) -> None:
    create_account(live_settings, "admin", "e2e-inviter")
    sessions = session_factory(live_settings.resolved_database_url)
    study_id = studies.create_study(sessions, "fixture", "invited study", size=3, min_confidence=0)

    page.goto("/login?next=/admin/accounts")
    page.fill('input[name="username"]', "e2e-inviter")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form.login-form button[type="submit"]')
    page.wait_for_url("**/admin/accounts")
    page.select_option('form.new-invite-form select[name="study_id"]', str(study_id))
    page.click('form.new-invite-form button[type="submit"]')
    link = page.input_value("#invite-link")
    assert re.fullmatch(rf"{re.escape(live_server)}/invite/[A-Za-z0-9_-]{{43}}", link), link
    assert "invited study" in page.inner_text("table.invites")

    with guarded_page(browser, live_server) as stranger:  # a fresh context: no cookies
        assert isinstance(stranger, Page)
        stranger.goto(link)
        assert "annotator" in stranger.inner_text("main")
        stranger.fill('input[name="username"]', "e2e-invited")
        stranger.fill('input[name="password"]', PASSWORD)
        stranger.click('form.login-form button[type="submit"]')
        stranger.wait_for_url(f"**/studies/{study_id}")
        main = stranger.inner_text("main")
        assert "invited study" in main
        assert "e2e-invited" in stranger.inner_text("header")  # signed in
        again = stranger.goto(link)
        assert again is not None and again.status == 410
        assert "used already" in stranger.inner_text("main")
