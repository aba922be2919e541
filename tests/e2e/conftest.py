"""Browser fixtures: a real uvicorn server on a loopback port and Debian's chromium.

Reuse them: ``live_server`` yields the base URL of a server on ``live_settings``' database
(the factory run by default; override ``live_settings`` in a test module to serve another DB),
and ``page`` is a fresh Playwright page that fails the test if the page requests anything
outside the server (the pages must work offline) or logs a JavaScript error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend.serve import background_server
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from tests.backend.factories import publish_fixture
from tests.backend.synthetic_run import steerable_run

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def live_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A migrated SQLite DB in a temp dir holding the factory run ``fixture``."""
    data_dir: Path = tmp_path_factory.mktemp("live")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    publish_fixture(session_factory(settings.resolved_database_url))
    return settings


@pytest.fixture(scope="session")
def live_server(live_settings: Settings) -> Iterator[str]:
    with background_server(live_settings) as base_url:
        yield base_url


@contextmanager
def synthetic_server(data_dir: Path, run_id: str) -> Iterator[str]:
    """A uvicorn server over a steerable synthetic run (500 items, 30 users, seed 2) of its own:
    the factory run of ``live_settings`` has no artifacts to steer."""
    settings, _ = steerable_run(data_dir, run_id, seed=2, n_items=500, n_users=30)
    with background_server(settings) as base:
        yield base


def chromium_missing(reason: str) -> None:
    """No browser: a failure in CI (``CI=true``, as CI services set it), where a skip would pass
    every browser test unseen; elsewhere a skip that says how to install it."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI=true: browser tests must run there)", pytrace=False)
    pytest.skip(f"{reason}: scripts/setup.sh --test installs Debian's chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an asyncio
    loop running in this thread while it is open, so any later test in the same process (random
    order, xdist workers) calling ``asyncio.run`` would fail."""
    if not Path(CHROMIUM).exists():
        chromium_missing(f"Debian chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def guarded_page(browser: object, base_url: str) -> Iterator[object]:
    """A page on ``base_url`` that fails the test on any request outside our server (no CDN,
    nothing downloaded at run time) or any JavaScript error."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    outside: list[str] = []
    errors: list[str] = []
    pg.on(
        "request",
        lambda req: (
            None
            if req.url.startswith(base_url) or req.url.startswith("data:")
            else outside.append(req.url)
        ),
    )
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # What the Content-Security-Policy blocks (backend/security.py) is reported on the console.
    pg.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert outside == [], f"the page requested URLs outside our server: {outside}"
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser: object, live_server: str) -> Iterator[object]:
    with guarded_page(browser, live_server) as pg:
        yield pg
