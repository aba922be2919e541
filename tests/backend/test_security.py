"""Security middleware and serving (issue 8 §2, §3): cross-site writes refused, Host header
checked, security headers and no inline script, proxy headers believed only from a configured
proxy, and no public interface without an admin account or read-only mode."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from backend.auth import CSRF_HEADER, SESSION_COOKIE
from backend.serve import RefusedToServe, background_server, serve, uvicorn_proxy_options
from core import accounts
from core.settings import REPO_ROOT, Settings
from core.store.engine import session_factory
from core.store.schema import Concept
from tests.backend.accounts import create_account, signed_in
from tests.worker.test_llm_client import closed_port_url

EXPLAIN = "/api/runs/fixture/latents/0/explain"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def web_concepts(settings: Settings) -> int:
    with session_factory(settings.resolved_database_url)() as session:
        return len(session.scalars(select(Concept.id).where(Concept.source == "web")).all())


def test_cross_site_form_post_to_explain_is_refused(
    app_client: TestClient, published: Settings
) -> None:
    login = signed_in(app_client, "annotator")
    # What a page on evil.example can make a browser send: a form post with the victim's
    # cookie (were it not SameSite) and even a guessed-right token.
    body = f"csrf_token={login.csrf_token}"
    for headers in (
        {"origin": "http://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "http://sub.testserver"},
        {"origin": "null"},
    ):
        response = app_client.post(EXPLAIN, content=body, headers={**FORM, **headers})
        assert response.status_code == 403, headers
        assert "Cross-origin request refused" in response.json()["detail"]
    # Steering changes nothing, but it gets the same check.
    steer = app_client.post(
        "/api/runs/fixture/users/0/steer", json={}, headers={"origin": "http://evil.example"}
    )
    assert steer.status_code == 403
    # Anonymous cross-site writes are refused as well, before anything else runs.
    app_client.cookies.clear()
    assert app_client.post(EXPLAIN, headers={"origin": "http://evil.example"}).status_code == 403
    assert web_concepts(published) == 0
    # The same post from our own origin passes every check (503: no LLM configured here).
    signed_in(app_client, "annotator")
    own = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert app_client.post(EXPLAIN, headers=own).status_code == 503
    # A script with no browser headers is not a cross-site browser: only the session checks.
    assert app_client.post(EXPLAIN).status_code == 503


def test_host_header_not_in_allowed_hosts_is_refused(published: Settings) -> None:
    default = published.model_copy(update={"allowed_hosts": Settings().allowed_hosts})
    assert default.allowed_hosts == ["localhost", "127.0.0.1", "[::1]"]
    app = create_app(default)
    for base, status in (
        ("http://127.0.0.1:8000", 200),
        ("http://localhost", 200),
        ("http://[::1]:8000", 200),
        ("http://evil.example", 400),  # a DNS-rebound name pointing at 127.0.0.1
        ("http://testserver", 400),
    ):
        with TestClient(app, base_url=base) as client:
            assert client.get("/index.json").status_code == status, base
            assert client.post(EXPLAIN).status_code in ((401,) if status == 200 else (400,))


PAGES_AND_API = [
    "/",
    "/runs/fixture",
    "/runs/fixture/latents",
    "/runs/fixture/latents/0",
    "/runs/fixture/latents/0.json",
    "/api/me",
    "/login",
    "/static/app.js",
    "/docs",
    "/openapi.json",
    "/runs/nope",  # an error page
]


def _inline_scripts(html: str) -> list[str]:
    """Executable inline scripts (JSON data blocks are not script)."""
    return [
        body
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        if "src=" not in attrs and "application/json" not in attrs
    ]


def test_security_headers_on_pages_and_api(app_client: TestClient) -> None:
    signed_in(app_client, "admin")
    for path in [*PAGES_AND_API, "/admin/accounts"]:
        response = app_client.get(path, headers={"accept": "text/html"})
        assert response.status_code in (200, 404), path
        headers = response.headers
        csp = headers["content-security-policy"]
        for directive in (
            "default-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ):
            assert directive in csp, (path, directive)
        script_src = re.search(r"script-src ([^;]*)", csp)
        assert script_src and "'unsafe-inline'" not in script_src[1], path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        inline = _inline_scripts(response.text) if "html" in headers["content-type"] else []
        allowed = {
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in inline
        }
        # Only /docs (FastAPI's Swagger page) has one, allowed by its hash and nothing broader.
        assert (path == "/docs") == bool(inline), path
        assert all(h in script_src[1] for h in allowed), path
    refused = app_client.get("/", headers={"host": "evil.example"})
    assert refused.status_code == 400 and "nosniff" in refused.headers["x-content-type-options"]


def test_templates_have_no_inline_script_or_handlers() -> None:
    for template in (REPO_ROOT / "frontend" / "templates").glob("*.html"):
        text = template.read_text()
        assert not _inline_scripts(text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), f"{template.name}: inline event handler"
        assert "javascript:" not in text, template.name


def _session_cookie(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """A signed-in annotator's cookie and CSRF header for a real server on ``settings``' DB."""
    sessions = session_factory(settings.resolved_database_url)
    account = create_account(sessions, "annotator")
    token, login = accounts.start_session(sessions, account.id, timedelta(hours=1))
    return {SESSION_COOKIE: token}, {CSRF_HEADER: login.csrf_token}


def _statuses_with_forged_addresses(settings: Settings, n: int) -> list[int]:
    cookies, headers = _session_cookie(settings)
    with background_server(settings) as base, httpx.Client(base_url=base, cookies=cookies) as c:
        return [
            c.post(EXPLAIN, headers={**headers, "x-forwarded-for": f"203.0.113.{i}"}).status_code
            for i in range(n)
        ]


def test_forged_x_forwarded_for_is_ignored_without_trusted_proxy(published: Settings) -> None:
    # 2 explanations per minute per client; the LLM is a closed port (502 at once, no retry).
    settings = published.model_copy(
        update={"llm_base_url": closed_port_url(), "llm_retries": 0, "llm_rate_limit_per_minute": 2}
    )
    settings = Settings(**{**settings.model_dump(), "llm_explains_per_hour": 0})  # no quota
    statuses = _statuses_with_forged_addresses(settings, 6)
    # Six "clients" from one socket share one bucket: two pass the limit, four are 429.
    assert statuses.count(429) == 4, statuses
    assert all(s != 429 for s in statuses[:2]), statuses
    # The same requests through a configured proxy are six clients (the check can fail).
    trusted = settings.model_copy(update={"trusted_proxies": "127.0.0.1"})
    assert 429 not in _statuses_with_forged_addresses(trusted, 6)


def test_uvicorn_proxy_options_follow_the_setting() -> None:
    assert uvicorn_proxy_options(Settings()) == {"proxy_headers": False}
    assert uvicorn_proxy_options(Settings(trusted_proxies="10.0.0.2,10.1.0.0/16")) == {
        "proxy_headers": True,
        "forwarded_allow_ips": "10.0.0.2,10.1.0.0/16",
    }


def test_serve_on_public_host_without_admin_refuses(fresh_settings: Settings) -> None:
    with pytest.raises(RefusedToServe) as refused:
        serve("0.0.0.0", 1, settings=fresh_settings)
    message = str(refused.value)
    assert "no enabled admin account" in message
    assert "recsae accounts add NAME --role admin" in message and "--read-only" in message
    # The command line says the same and exits 2 before listening.
    env = {**os.environ, **fresh_settings.as_environment()}
    cmd = [sys.executable, "-m", "backend.serve", "--host", "0.0.0.0", "--port", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 2 and "refusing to serve on 0.0.0.0" in done.stderr
    # A disabled admin does not count; an enabled one, read-only, or loopback does.
    sessions = session_factory(fresh_settings.resolved_database_url)
    create_account(sessions, "admin", "root")
    accounts.set_disabled(sessions, "root")
    assert accounts.public_serving_refusal("0.0.0.0", fresh_settings) is not None
    assert accounts.public_serving_refusal("::", fresh_settings) is not None
    read_only = fresh_settings.model_copy(update={"read_only": True})
    assert accounts.public_serving_refusal("0.0.0.0", read_only) is None
    for loopback in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert accounts.public_serving_refusal(loopback, fresh_settings) is None
    accounts.set_disabled(sessions, "root", False)
    assert accounts.public_serving_refusal("0.0.0.0", fresh_settings) is None


def test_compose_publishes_on_loopback_and_needs_an_admin_secret() -> None:
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    # every published port binds to RECSAE_BIND, loopback by default (tests/test_compose.py
    # checks each service's ports one by one)
    assert '"${RECSAE_BIND:-127.0.0.1}:${RECSAE_PORT:-8000}:${RECSAE_PORT:-8000}"' in compose
    assert "${RECSAE_ADMIN_PASSWORD:?" in compose
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "ensure-admin" in dockerfile or "ensure-admin" in compose
    assert Path(REPO_ROOT / "Dockerfile").is_file()
