"""Signing in and out in a real browser, under the CSP (issue 8 §2): the explain button asks
anonymous visitors to sign in, works for a signed-in account (its fetch carries the CSRF
token), and signing out ends it."""

from __future__ import annotations

import pytest

from core.settings import Settings
from tests.backend.accounts import PASSWORD, create_account

pytestmark = pytest.mark.browser


def test_sign_in_explain_sign_out(page, live_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    create_account(live_settings, "annotator", "e2e-ann")
    page.goto("/runs/fixture/latents/0")
    button = page.locator(".explain-button")
    # Signed out, the action that needs an account is disabled and says where to sign in.
    assert button.is_visible() and button.is_disabled()
    assert "sign in" in page.locator("#explain-signin").inner_text()

    page.click("#explain-signin a")
    page.wait_for_url(
        lambda url: (
            "/login?next=%2Fruns%2Ffixture%2Flatents%2F0" in url
            or "/login?next=/runs/fixture/latents/0" in url
        )
    )
    page.fill('input[name="username"]', "e2e-ann")
    page.fill('input[name="password"]', PASSWORD)
    page.click('form.login-form button[type="submit"]')
    page.wait_for_url("**/runs/fixture/latents/0")
    assert page.locator("header .who").inner_text() == "e2e-ann"

    # Signed in, the same click passes sign-in and CSRF checks; this server has no LLM (503).
    page.locator(".explain-button").click()
    page.wait_for_function(
        "() => document.querySelector('.explain-result p.error')?.textContent.includes('503')"
    )

    page.click("form.signout button")
    page.wait_for_url("**/")
    assert page.locator("a.signin").is_visible()
    assert page.locator("header .who").count() == 0


def test_api_docs_render_under_the_csp(page) -> None:  # type: ignore[no-untyped-def]
    # FastAPI's Swagger page has one inline script, allowed by its hash (backend/security.py).
    # Its init script ran (it builds .swagger-ui inside #swagger-ui); a blocked script would be
    # a CSP violation on the console, which fails the page fixture.
    page.goto("/docs")
    page.locator("#swagger-ui .swagger-ui").first.wait_for(state="attached")
    # ... and it read our OpenAPI 3.1 document: operations listed, no "Unable to render".
    page.locator(".opblock").first.wait_for(state="visible")
    assert "Unable to render" not in page.content()
