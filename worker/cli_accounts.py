"""``recsae accounts``: the explorer's sign-in accounts (core/accounts.py; README "Accounts and
security"). The first admin comes from here.

Passwords never go on the command line (it is visible to every user of the machine in ``ps``
and lands in shell history): they come from a hidden prompt, from ``--password-file`` (``-`` is
stdin), or from the ``RECSAE_ACCOUNT_PASSWORD`` variable, in that order of preference.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported by the commands: `recsae --help` need not load SQLAlchemy
    from sqlalchemy.orm import Session, sessionmaker

    from core.settings import Settings

ROLES = ("admin", "annotator")  # = core.accounts.ROLES (tests check they agree)

PASSWORD_ENV = "RECSAE_ACCOUNT_PASSWORD"

app = typer.Typer(
    help="Accounts that sign in to the explorer (roles: admin, annotator).",
    no_args_is_help=True,
)

Username = Annotated[str, typer.Argument(help="1-64 letters, digits, '.', '_' or '-'.")]
PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help=f"Read the password from this file's first line ('-': stdin). Without it: "
        f"${PASSWORD_ENV} if set, else a prompt.",
    ),
]


def _sessions() -> sessionmaker[Session]:
    from core.settings import get_settings
    from core.store import migrate
    from core.store.engine import session_factory

    url = get_settings().resolved_database_url
    migrate.upgrade(url)
    return session_factory(url)


def _password(password_file: Path | None, env: str = PASSWORD_ENV) -> str:
    from core.accounts import AccountError

    if password_file is not None:
        text = sys.stdin.read() if str(password_file) == "-" else password_file.read_text()
        lines = text.splitlines()
        return lines[0] if lines else ""
    if os.environ.get(env):
        return os.environ[env]
    if not sys.stdin.isatty():
        raise AccountError(
            f"no password given: use --password-file, set ${env}, or run in a terminal"
        )
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _run(fn: Callable[[], None]) -> None:
    from core.accounts import AccountError

    try:
        fn()
    except (AccountError, OSError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err


@app.command()
def add(
    username: Username,
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "annotator",
    password_file: PasswordFile = None,
) -> None:
    """Add an account (the first admin: --role admin)."""

    def do() -> None:
        from core import accounts

        accounts.check_username(username)
        accounts.check_role(role)
        accounts.create_account(_sessions(), username, _password(password_file), role)
        typer.echo(f"added {role} {username!r}")

    _run(do)


@app.command("list")
def list_() -> None:
    """List the accounts: name, role, status, last sign-in."""

    def do() -> None:
        from core import accounts

        rows = accounts.list_accounts(_sessions())
        if not rows:
            typer.echo(
                "no accounts yet; add the first admin: recsae accounts add NAME --role admin"
            )
        for a in rows:
            status = "disabled" if a.disabled else "active"
            last = a.last_login_at.strftime("%Y-%m-%d %H:%M") if a.last_login_at else "never"
            typer.echo(f"{a.username}\t{a.role}\t{status}\tlast sign-in: {last}")

    _run(do)


@app.command()
def disable(username: Username) -> None:
    """Disable an account; its sessions end at once."""
    from core import accounts

    _run(lambda: accounts.set_disabled(_sessions(), username, True))
    typer.echo(f"disabled {username!r}")


@app.command()
def enable(username: Username) -> None:
    """Enable a disabled account again."""
    from core import accounts

    _run(lambda: accounts.set_disabled(_sessions(), username, False))
    typer.echo(f"enabled {username!r}")


@app.command("set-password")
def set_password(username: Username, password_file: PasswordFile = None) -> None:
    """Set a new password; the account's sessions end (sign in again)."""

    def do() -> None:
        from core import accounts

        accounts.get_account(_sessions(), username)  # an unknown name fails before the prompt
        accounts.set_password(_sessions(), username, _password(password_file))
        typer.echo(f"new password set for {username!r}")

    _run(do)


@app.command()
def invite(
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "annotator",
    study: Annotated[
        int | None, typer.Option(help="Assign the new account to this study (its id).")
    ] = None,
    days: Annotated[float, typer.Option(help="How long the link works, in days.")] = 7,
    base_url: Annotated[
        str, typer.Option(help="Where the explorer is reached (the link starts with it).")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Print a single-use invite link: whoever opens it picks a username and password and gets
    an account with ROLE (assigned to STUDY). Only its hash is stored: this is the one time the
    link is shown."""

    def do() -> None:
        from core import invites

        token, expires_at = invites.create_invite(_sessions(), role, study_id=study, days=days)
        typer.echo(f"{base_url.rstrip('/')}{invites.INVITE_PATH}{token}")
        typer.echo(
            f"single use, for a new {role}"
            + (f" assigned to study {study}" if study is not None else "")
            + f"; valid until {expires_at:%Y-%m-%d %H:%M} UTC",
            err=True,
        )

    _run(do)


@app.command("ensure-admin")
def ensure_admin(
    username: Username,
    password_env: Annotated[
        str, typer.Option(help="The variable holding the password (containers: a secret).")
    ] = "RECSAE_ADMIN_PASSWORD",
) -> None:
    """Create the admin USERNAME, or make it an enabled admin with this password (for containers,
    which run it at every start)."""

    def do() -> None:
        from core import accounts

        password = os.environ.get(password_env, "")
        if not password:
            raise accounts.AccountError(
                f"${password_env} is not set: it must hold the admin's password"
            )
        created = accounts.ensure_admin(_sessions(), username, password)
        typer.echo(f"{'created' if created else 'checked'} admin {username!r}")

    _run(do)


def check_public_host(host: str, settings: Settings, read_only: bool) -> None:
    """Exit with the reason (and what to do) when serving on ``host`` would expose the explorer
    without an admin account; the server makes the same check (backend/serve.py)."""
    from core import accounts

    update = {"read_only": True} if read_only else {}
    refusal = accounts.public_serving_refusal(host, settings.model_copy(update=update))
    if refusal is not None:
        typer.secho(f"error: {refusal}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
