"""Accounts (people who sign in to the explorer) and their login sessions (README, "Accounts and
security").

Roles: ``admin`` (manages accounts; may do everything an annotator may) and ``annotator``
(writes concepts and, later, annotations). Passwords are hashed with pwdlib's recommended hasher
(argon2id); only the hash is stored. A login session is a random token the browser keeps in a
cookie; the database keeps only its sha256, so a leaked database does not sign anyone in. Each
session has its own CSRF token, sent back by forms and ``fetch`` calls.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from pwdlib import PasswordHash
from sqlalchemy import String, bindparam, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import Account, LoginSession

ROLES = ("admin", "annotator")
# A username: 1-64 letters or digits of any script (Unicode alphanumerics, as Python's \w),
# '.', '_' or '-', starting with a letter or digit; stored in Unicode NFC, so the same name typed
# on any keyboard is one account. The API schema states the same pattern (backend/routes/auth.py).
USERNAME_MAX = 64
USERNAME_PATTERN = rf"^[^\W_][\w.-]{{0,{USERNAME_MAX - 1}}}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN.removesuffix("$") + r"\Z")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; a cap keeps a huge body from costing CPU

_hasher = PasswordHash.recommended()


@cache
def _dummy_hash() -> str:
    """Verified when the username is unknown, so a wrong name costs as long as a wrong password
    (made on first use: hashing at import would slow down every ``recsae`` command)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """Bad account input or an unknown account; the message says what to fix."""


class NameTaken(AccountError):
    """An account with this name exists already (HTTP 409)."""


@dataclass(frozen=True)
class Login:
    """A live login session: who is signed in, and the CSRF token bound to this session."""

    account: Account
    csrf_token: str
    expires_at: datetime


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- passwords ---------------------------------------------------------------------------------


def normalise_username(username: str) -> str:
    """The stored form of ``username`` (Unicode NFC): what lookups compare against."""
    return unicodedata.normalize("NFC", username)


def check_username(username: str) -> str:
    """``username`` in its stored form (NFC), or AccountError saying what to change.

    Allowed (:data:`USERNAME_PATTERN`): 1-64 letters or digits of any script, '.', '_' or '-',
    starting with a letter or digit. No spaces (at the ends or inside), no control, format or
    bidi characters: a name must read the same in every list and terminal it is printed in.
    """
    name = normalise_username(username)
    if _USERNAME_RE.match(name) is None:
        raise AccountError(
            f"username {username!r} is not allowed: {_username_problem(name)}; use 1-"
            f"{USERNAME_MAX} letters (any script), digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def _username_problem(name: str) -> str:
    if not name:
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with white space (a space, tab or new line): remove it"
    if len(name) > USERNAME_MAX:
        return f"it is {len(name)} characters long"
    if not (name[0].isalnum()):
        return f"it starts with {name[0]!r}"
    for position, char in enumerate(name, 1):
        if not (char.isalnum() or char in "._-"):
            kind = unicodedata.category(char)
            return f"it has {_char_kind(char, kind)} (U+{ord(char):04X}) at position {position}"
    return "it does not match " + USERNAME_PATTERN


def _char_kind(char: str, category: str) -> str:
    if category == "Cc":
        return "a control character"
    if category == "Cf":
        return "an invisible formatting character such as a bidi override"
    if category[0] == "Z":
        return "a space"
    return f"the character {char!r}"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} is unknown; use one of: {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one uses outdated parameters, else None)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False, None
    return _hasher.verify_and_update(password, password_hash)


# --- accounts ----------------------------------------------------------------------------------


def create_account(
    sessions: sessionmaker[Session], username: str, password: str, role: str
) -> Account:
    username = check_username(username)
    check_role(role)
    password_hash = hash_password(password)
    with sessions.begin() as session:
        if _find(session, username) is not None:
            raise NameTaken(f"an account named {username!r} exists already; pick another name")
        account = Account(username=username, password_hash=password_hash, role=role)
        session.add(account)
        session.flush()
        return account


def _find(session: Session, username: str) -> Account | None:
    name = normalise_username(username)
    return session.scalar(select(Account).where(Account.username == name))


def get_account(sessions: sessionmaker[Session], username: str) -> Account:
    with sessions() as session:
        account = _find(session, username)
    if account is None:
        raise AccountError(f"no account is named {username!r}; `recsae accounts list` shows them")
    return account


def list_accounts(sessions: sessionmaker[Session]) -> list[Account]:
    with sessions() as session:
        return list(session.scalars(select(Account).order_by(Account.username)))


def admin_exists(sessions: sessionmaker[Session]) -> bool:
    """Whether an enabled admin account exists (a public server needs one)."""
    query = select(func.count()).where(Account.role == "admin", Account.disabled.is_(False))
    with sessions() as session:
        return bool(session.scalar(query.select_from(Account)))


def set_password(sessions: sessionmaker[Session], username: str, password: str) -> None:
    """A new password; every session of the account ends (sign in again with the new one)."""
    password_hash = hash_password(password)
    with sessions.begin() as session:
        account = _find(session, username)
        if account is None:
            raise AccountError(f"no account is named {username!r}")
        account.password_hash = password_hash
        _end_sessions_of(session, account.id)


def set_disabled(sessions: sessionmaker[Session], username: str, disabled: bool = True) -> None:
    """Disable (or enable) an account; disabling ends its sessions at once."""
    with sessions.begin() as session:
        account = _find(session, username)
        if account is None:
            raise AccountError(f"no account is named {username!r}")
        account.disabled = disabled
        if disabled:
            _end_sessions_of(session, account.id)


def ensure_admin(sessions: sessionmaker[Session], username: str, password: str) -> bool:
    """An enabled admin ``username`` with ``password``: created (True) or updated (False).

    For containers, which get the first admin from a secret at every start.
    """
    username = check_username(username)
    password_hash = hash_password(password)
    with sessions.begin() as session:
        account = _find(session, username)
        if account is None:
            session.add(Account(username=username, password_hash=password_hash, role="admin"))
            return True
        matches, _ = verify_password(password, account.password_hash)
        if not matches:
            account.password_hash = password_hash
            _end_sessions_of(session, account.id)
        account.role, account.disabled = "admin", False
        return False


def authenticate(sessions: sessionmaker[Session], username: str, password: str) -> Account | None:
    """The enabled account ``username`` if ``password`` is its password, else None."""
    with sessions.begin() as session:
        account = _find(session, username)
        if account is None:
            verify_password(password, _dummy_hash())
            return None
        matches, new_hash = verify_password(password, account.password_hash)
        if not matches or account.disabled:
            return None
        if new_hash is not None:
            account.password_hash = new_hash
        account.last_login_at = datetime.now(UTC)
        return account


# --- login sessions ----------------------------------------------------------------------------


def start_session(
    sessions: sessionmaker[Session], account_id: int, ttl: timedelta
) -> tuple[str, Login]:
    """A new login session; returns (the token for the cookie, the session). Expired sessions of
    every account are swept here, so the table does not grow without bound."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = LoginSession(
        token_hash=token_hash(token),
        account_id=account_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
    )
    with sessions.begin() as session:
        session.execute(delete(LoginSession).where(LoginSession.expires_at <= now))
        session.add(row)
        account = session.get_one(Account, account_id)
    return token, Login(account, row.csrf_token, _utc(row.expires_at))


_ACCOUNT_COLUMNS = tuple(Account.__table__.columns.keys())
# Built once (bound parameter): it runs on every request that carries a session cookie.
_LOOKUP = (
    select(*Account.__table__.columns, LoginSession.csrf_token, LoginSession.expires_at)
    .join(LoginSession, LoginSession.account_id == Account.id)
    .where(LoginSession.token_hash == bindparam("token_hash", type_=String))
)


def lookup_session(sessions: sessionmaker[Session], token: str) -> Login | None:
    """The live session of ``token``: None when unknown, expired, or its account is disabled.
    One Core query (no ORM unit of work); the Account it returns is detached, for reading."""
    if not token or len(token) > 256:
        return None
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        found = conn.execute(_LOOKUP, {"token_hash": token_hash(token)}).first()
    if found is None:
        return None
    *columns, csrf_token, expires_at = found
    account = Account(**dict(zip(_ACCOUNT_COLUMNS, columns, strict=True)))
    expires_at = _utc(expires_at)
    if expires_at <= datetime.now(UTC) or account.disabled:
        return None
    return Login(account, csrf_token, expires_at)


def end_session(sessions: sessionmaker[Session], token: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash(token)))


def _end_sessions_of(session: Session, account_id: int) -> None:
    session.execute(delete(LoginSession).where(LoginSession.account_id == account_id))


# --- serving beyond this machine ---------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_serving_refusal(host: str, settings: Settings) -> str | None:
    """Why the explorer must not serve on ``host``, or None when it may.

    Loopback is always fine. Any other interface lets others reach the explorer, so it needs an
    enabled admin account (every write then needs a signed-in account) or read-only mode.
    """
    if is_loopback(host) or settings.read_only:
        return None
    url = settings.resolved_database_url
    migrate.upgrade(url)
    if admin_exists(session_factory(url)):
        return None
    return (
        f"refusing to serve on {host}: it is not a loopback address, so anyone who can reach "
        "this machine could use the explorer, and the database has no enabled admin account.\n"
        "Do one of:\n"
        "  - create the first admin, then start again: recsae accounts add NAME --role admin\n"
        "    (writes then need a signed-in account; set RECSAE_ALLOWED_HOSTS to the host names "
        "the server is reached by)\n"
        "  - start read-only (nothing can be changed from the web): add --read-only\n"
        "  - serve on this machine only: --host 127.0.0.1"
    )
