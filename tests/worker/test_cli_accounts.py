"""``recsae accounts`` (worker/cli_accounts.py) and ``recsae serve`` on a public host: passwords
never from the command line, the first admin from the CLI, disable/enable/set-password, and the
refusal to serve publicly without an admin (or --read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core import accounts
from core.settings import Settings, get_settings
from core.store.engine import session_factory
from core.store.schema import Account
from worker import cli_accounts
from worker.cli import app

runner = CliRunner()
PASSWORD = "a long enough password"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("RECSAE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RECSAE_DATABASE_URL", raising=False)
    monkeypatch.delenv(cli_accounts.PASSWORD_ENV, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["accounts", *args], input=input, env=env)
    return result.exit_code, result.output


def stored(settings: Settings) -> dict[str, tuple[str, bool, str]]:
    with session_factory(settings.resolved_database_url)() as session:
        rows = session.scalars(select(Account)).all()
    return {a.username: (a.role, a.disabled, a.password_hash) for a in rows}


def test_roles_agree_with_core() -> None:
    assert cli_accounts.ROLES == accounts.ROLES


def test_first_admin_from_the_cli_with_a_password_file(settings: Settings, tmp_path: Path) -> None:
    code, out = run("list")
    assert code == 0 and "recsae accounts add NAME --role admin" in out
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    code, out = run("add", "root", "--role", "admin", "--password-file", str(secret))
    assert code == 0, out
    role, disabled, password_hash = stored(settings)["root"]
    assert (role, disabled) == ("admin", False) and password_hash.startswith("$argon2id$")
    sessions = session_factory(settings.resolved_database_url)
    assert accounts.authenticate(sessions, "root", PASSWORD) is not None
    assert accounts.admin_exists(sessions)
    code, out = run("list")
    assert "root\tadmin\tactive" in out


def test_password_from_stdin_env_or_prompt(settings: Settings) -> None:
    assert run("add", "ann", "--password-file", "-", input=PASSWORD + "\n")[0] == 0
    env = {cli_accounts.PASSWORD_ENV: PASSWORD}
    assert run("add", "bob", "--role", "annotator", env=env)[0] == 0
    sessions = session_factory(settings.resolved_database_url)
    assert accounts.authenticate(sessions, "bob", PASSWORD) is not None
    # No password source at all (not a terminal): a clear error, no account.
    code, out = run("add", "carl")
    assert code == 1 and "no password given" in out and "carl" not in stored(settings)


def test_bad_input_says_what_to_fix(settings: Settings) -> None:
    env = {cli_accounts.PASSWORD_ENV: PASSWORD}
    code, out = run("add", "x", "--role", "boss", env=env)
    assert code == 1 and "role 'boss' is unknown; use one of: admin, annotator" in out
    code, out = run("add", "bad name", env=env)
    assert code == 1 and "is not allowed" in out
    code, out = run("add", "x", env={cli_accounts.PASSWORD_ENV: "short"})
    assert code == 1 and "at least 10 characters" in out
    assert run("add", "x", env=env)[0] == 0
    code, out = run("add", "x", env=env)
    assert code == 1 and "exists already" in out
    code, out = run("disable", "nobody")
    assert code == 1 and "no account is named 'nobody'" in out
    assert stored(settings).keys() == {"x"}
    # The password is not an option: it cannot end up in `ps` or the shell history.
    code, _ = run("add", "y", "--password", PASSWORD)
    assert code != 0 and "y" not in stored(settings)


def test_disable_enable_and_set_password(settings: Settings) -> None:
    sessions = session_factory(settings.resolved_database_url)
    assert run("add", "ann", env={cli_accounts.PASSWORD_ENV: PASSWORD})[0] == 0
    assert run("disable", "ann")[0] == 0
    assert stored(settings)["ann"][1] is True
    assert accounts.authenticate(sessions, "ann", PASSWORD) is None
    assert run("enable", "ann")[0] == 0
    new = "an entirely new password"
    assert run("set-password", "ann", "--password-file", "-", input=new + "\n")[0] == 0
    assert accounts.authenticate(sessions, "ann", PASSWORD) is None
    assert accounts.authenticate(sessions, "ann", new) is not None


def test_ensure_admin_creates_then_keeps_the_admin(settings: Settings) -> None:
    code, out = run("ensure-admin", "root")
    assert code == 1 and "$RECSAE_ADMIN_PASSWORD is not set" in out
    env = {"RECSAE_ADMIN_PASSWORD": PASSWORD}
    assert run("ensure-admin", "root", env=env) == (0, "created admin 'root'\n")
    first = stored(settings)["root"][2]
    assert run("ensure-admin", "root", env=env) == (0, "checked admin 'root'\n")
    assert stored(settings)["root"][2] == first  # same password: the hash is kept
    assert run("disable", "root")[0] == 0
    assert run("ensure-admin", "root", env={"RECSAE_ADMIN_PASSWORD": "rotated secret!"})[0] == 0
    role, disabled, _ = stored(settings)["root"]
    assert (role, disabled) == ("admin", False)
    sessions = session_factory(settings.resolved_database_url)
    assert accounts.authenticate(sessions, "root", "rotated secret!") is not None


def test_serve_on_public_host_without_admin_refuses_from_the_cli(settings: Settings) -> None:
    for command in (["serve"], ["demo", "--serve-only"]):
        result = runner.invoke(app, [*command, "--host", "0.0.0.0", "--port", "1"])
        assert result.exit_code == 2, result.output
        assert "refusing to serve on 0.0.0.0" in result.output
        assert "recsae accounts add NAME --role admin" in result.output


def test_invite_prints_a_single_use_link(settings: Settings) -> None:
    from core import invites
    from core.accounts import token_hash
    from core.store.schema import Invite

    code, out = run("invite", "--role", "annotator", "--base-url", "https://explorer.example/")
    assert code == 0, out
    link = out.splitlines()[0]
    assert link.startswith("https://explorer.example/invite/")
    token = link.rsplit("/", 1)[1]
    sessions = session_factory(settings.resolved_database_url)
    with sessions() as session:
        assert session.get(Invite, token_hash(token)) is not None  # stored as its hash only
    invites.accept_invite(sessions, token, "invited", PASSWORD)
    assert stored(settings)["invited"][0] == "annotator"
    code, out = run("invite", "--study", "7")
    assert code == 1 and "no study 7" in out
    code, out = run("invite", "--role", "owner")
    assert code == 1 and "role 'owner' is unknown" in out
