"""Single-use invitations to create an account (README "Human evaluation").

An admin creates an invite (a role, optionally a study to assign, an expiry) and hands its
link on; the database keeps only the token's sha256, like a login session's
(core/accounts.py). Whoever opens the link picks a username and password and gets the account,
assigned to the study. The link is spent by a conditional UPDATE (``used_at IS NULL`` and not
expired) in the same transaction as the account's INSERT: of two uses racing on the same token,
on SQLite or PostgreSQL, exactly one updates a row and creates an account; the other finds
nothing to update and creates nothing. A failed sign-up (a name taken) rolls the spending back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.accounts import (
    AccountError,
    NameTaken,
    _utc,
    check_role,
    check_username,
    hash_password,
    token_hash,
)
from core.store.schema import Account, Invite, Study, StudyAnnotator

DEFAULT_DAYS = 7
MAX_DAYS = 90
INVITE_PATH = "/invite/"


class InviteGone(AccountError):
    """The invite was used, has expired or was revoked (a new one is needed)."""


class InviteUnknown(AccountError):
    """No invite has this token."""


class StudyUnknown(AccountError):
    """The invite names a study that does not exist (HTTP 404)."""


@dataclass(frozen=True)
class OpenInvite:
    """An invite not yet used: what the admin's list shows (never the token)."""

    token_hash: str
    role: str
    study_id: int | None
    study_name: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime


def create_invite(
    sessions: sessionmaker[Session],
    role: str,
    *,
    created_by: int | None = None,
    study_id: int | None = None,
    days: float = DEFAULT_DAYS,
) -> tuple[str, datetime]:
    """A new invite; returns (its token: shown once, only its hash is kept; when it expires)."""
    check_role(role)
    if not 0 < days <= MAX_DAYS:
        raise AccountError(f"an invite lasts more than 0 and at most {MAX_DAYS} days, not {days}")
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        if study_id is not None and session.get(Study, study_id) is None:
            raise StudyUnknown(f"no study {study_id}; the studies are listed at /studies")
        invite = Invite(
            token_hash=token_hash(token), role=role, created_by=created_by, created_at=now,
            expires_at=now + timedelta(days=days), study_id=study_id,
        )  # fmt: skip
        session.add(invite)
    return token, invite.expires_at


def _why_not(invite: Invite | None, now: datetime) -> AccountError:
    if invite is None:
        return InviteUnknown("this invite link is unknown: check it was copied whole")
    if invite.used_at is not None:
        return InviteGone("this invite link has been used already; ask an admin for a new one")
    return InviteGone("this invite link has expired or was revoked; ask an admin for a new one")


def open_invite(sessions: sessionmaker[Session], token: str) -> Invite:
    """The invite of ``token`` if it can still be used; else InviteUnknown or InviteGone."""
    now = datetime.now(UTC)
    with sessions() as session:
        invite = session.get(Invite, token_hash(token)) if 0 < len(token) <= 256 else None
    if invite is None or invite.used_at is not None or _utc(invite.expires_at) <= now:
        raise _why_not(invite, now)
    return invite


def accept_invite(
    sessions: sessionmaker[Session], token: str, username: str, password: str
) -> Account:
    """Spend the invite of ``token`` on a new account ``username`` (assigned to the invite's
    study, if any), all in one transaction; raises InviteUnknown / InviteGone (nothing created)
    or AccountError (a name or password not allowed; the invite stays open)."""
    username = check_username(username)
    password_hash = hash_password(password)  # argon2 before the transaction: it holds no lock
    digest, now = token_hash(token), datetime.now(UTC)
    if not 0 < len(token) <= 256:
        raise _why_not(None, now)
    with sessions.begin() as session:
        spent = session.execute(
            update(Invite)
            .where(Invite.token_hash == digest, Invite.used_at.is_(None), Invite.expires_at > now)
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult: rowcount
            raise _why_not(session.get(Invite, digest), now)
        invite = session.get_one(Invite, digest)
        account = Account(username=username, password_hash=password_hash, role=invite.role)
        session.add(account)
        try:
            session.flush()
        except IntegrityError as exc:  # the name is taken: the whole transaction rolls back
            raise NameTaken(
                f"an account named {username!r} exists already; pick another name"
            ) from exc
        invite.account_id = account.id
        if invite.study_id is not None:
            session.add(StudyAnnotator(study_id=invite.study_id, account_id=account.id))
        return account


def list_open(sessions: sessionmaker[Session]) -> list[OpenInvite]:
    """Invites neither used nor expired, newest first."""
    creator = aliased(Account)
    query = (
        select(Invite, Study.name, creator.username)
        .outerjoin(Study, Study.id == Invite.study_id)
        .outerjoin(creator, creator.id == Invite.created_by)
        .where(Invite.used_at.is_(None), Invite.expires_at > datetime.now(UTC))
        .order_by(Invite.created_at.desc())
    )
    with sessions() as session:
        rows = session.execute(query).all()
    return [
        OpenInvite(
            i.token_hash, i.role, i.study_id, study, by, _utc(i.created_at), _utc(i.expires_at)
        )
        for i, study, by in rows
    ]


def revoke(sessions: sessionmaker[Session], digest: str) -> None:
    """End an open invite now (its link then answers 'expired or revoked')."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        ended = session.execute(
            update(Invite)
            .where(Invite.token_hash == digest, Invite.used_at.is_(None), Invite.expires_at > now)
            .values(expires_at=now)
        )
        if ended.rowcount != 1:  # type: ignore[attr-defined]
            raise InviteUnknown("no open invite has this id: it was used, revoked or expired")
