"""Studies and ratings in the store (issue 10 §2, §6): seeded samples, one rating per key enforced
by the database, every change kept, closed studies frozen, concurrent writers on both engines."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import studies
from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import Rating, RatingChange, StudyItem
from tests.backend.accounts import create_account
from tests.backend.factories import publish_fixture, remove_run


def _items(sessions: sessionmaker[Session], study_id: int) -> list[StudyItem]:
    with sessions() as session:
        return list(
            session.scalars(
                select(StudyItem).filter_by(study_id=study_id).order_by(StudyItem.position)
            )
        )


def test_study_samples_seeded_latents_above_the_minimum(
    fresh_sessions: sessionmaker[Session],
) -> None:
    publish_fixture(fresh_sessions)
    first = studies.create_study(fresh_sessions, "fixture", "a", size=3, seed=7)
    again = studies.create_study(fresh_sessions, "fixture", "b", size=3, seed=7)
    items = _items(fresh_sessions, first)
    assert [(i.latent_idx, i.method) for i in items] == [
        (i.latent_idx, i.method) for i in _items(fresh_sessions, again)
    ]
    assert len({i.latent_idx for i in items}) == 3
    assert all(i.confidence is not None and i.confidence >= 0.8 for i in items)
    llm = studies.create_study(fresh_sessions, "fixture", "c", methods="llm", min_confidence=0.9)
    assert {(i.method, i.latent_idx) for i in _items(fresh_sessions, llm)} == {
        ("llm", 0),
        ("llm", 10),
    }
    with pytest.raises(studies.StudyError, match="lower the minimum"):
        studies.create_study(fresh_sessions, "fixture", "d", min_confidence=1.0, methods="tfidf")
    with pytest.raises(studies.StudyError, match="methods must be"):
        studies.create_study(fresh_sessions, "fixture", "e", methods="bert")


def _study_with(
    sessions: sessionmaker[Session], n_annotators: int
) -> tuple[int, list[int], list[StudyItem]]:
    publish_fixture(sessions)
    study_id = studies.create_study(sessions, "fixture", "s", size=100)
    names = [create_account(sessions, "annotator").username for _ in range(n_annotators)]
    studies.assign(sessions, study_id, names)
    with sessions() as session:
        from core.store.schema import Account

        ids = [session.scalar(select(Account.id).filter_by(username=n)) for n in names]
    return study_id, [i for i in ids if i is not None], _items(sessions, study_id)


def test_rating_changes_are_kept_and_closed_studies_frozen(
    fresh_sessions: sessionmaker[Session],
) -> None:
    study_id, (ann, other), items = _study_with(fresh_sessions, 2)
    item = items[0]
    rate: Callable[..., studies.RateResult] = lambda v, reason=None, who=ann: studies.rate(  # noqa: E731
        fresh_sessions, study_id, who, item.latent_idx, item.concept_id, v, reason
    )
    assert rate(3).created
    assert not rate(3).changed  # the same value again changes nothing
    assert rate(None, "examples unclear").changed
    assert rate(4).changed
    with fresh_sessions() as session:
        history = session.execute(
            select(
                RatingChange.old_value, RatingChange.new_value, RatingChange.new_skip_reason
            ).order_by(RatingChange.id)
        ).all()
        assert session.scalar(select(func.count()).select_from(Rating)) == 1
    assert [tuple(h) for h in history] == [
        (None, 3, None),
        (3, None, "examples unclear"),
        (None, 4, None),
    ]
    with pytest.raises(studies.StudyError, match="1, 2, 3 or 4"):
        rate(5)
    with pytest.raises(studies.StudyError, match="needs a reason"):
        rate(None, " ")
    with pytest.raises(studies.StudyError, match="NUL"):  # PostgreSQL's text refuses it
        rate(None, "a\x00b")
    outsider = create_account(fresh_sessions, "annotator").id
    with pytest.raises(PermissionError):
        rate(2, who=outsider)
    studies.set_status(fresh_sessions, study_id, "closed")
    with pytest.raises(studies.StudyClosed):
        rate(1)
    with pytest.raises(studies.StudyClosed):
        rate(2, who=other)
    with fresh_sessions() as session:
        assert session.scalar(select(Rating.value)) == 4
        assert session.scalar(select(func.count()).select_from(Rating)) == 1


def test_the_database_refuses_a_second_rating_for_one_key(
    fresh_sessions: sessionmaker[Session],
) -> None:
    study_id, (ann,), items = _study_with(fresh_sessions, 1)
    key = {
        "study_id": study_id,
        "account_id": ann,
        "latent_idx": items[0].latent_idx,
        "concept_id": items[0].concept_id,
    }
    with fresh_sessions.begin() as session:
        session.add(Rating(**key, value=2))
    with pytest.raises(IntegrityError), fresh_sessions.begin() as session:
        session.add(Rating(**key, value=3))


def hammer(
    sessions: sessionmaker[Session], study_id: int, accounts: list[int], items: list[StudyItem]
) -> list[BaseException]:
    """Eight threads per annotator submit every item (the same keys, different values) at once."""
    errors: list[BaseException] = []
    start = threading.Barrier(8 * len(accounts))

    def submit(account: int, offset: int) -> None:
        try:
            start.wait()
            for n, item in enumerate(items):
                studies.rate(
                    sessions,
                    study_id,
                    account,
                    item.latent_idx,
                    item.concept_id,
                    1 + (n + offset) % 4,
                )
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(a, k)) for a in accounts for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _check_nothing_lost_or_duplicated(
    sessions: sessionmaker[Session], study_id: int, accounts: list[int], items: list[StudyItem]
) -> None:
    with sessions() as session:
        rows = session.execute(
            select(
                Rating.account_id, Rating.latent_idx, Rating.concept_id, Rating.id, Rating.value
            ).filter_by(study_id=study_id)
        ).all()
        changes = session.execute(
            select(RatingChange.rating_id, RatingChange.old_value, RatingChange.new_value).order_by(
                RatingChange.id
            )
        ).all()
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)) == len(accounts) * len(items)
    # Each rating's change history is a chain ending in its stored value: no update was lost.
    last: dict[int, int | None] = {}
    for rating_id, old, new in changes:
        assert old == last.get(rating_id), (rating_id, [c for c in changes if c[0] == rating_id])
        last[rating_id] = new
    assert {r[3]: r[4] for r in rows} == last


def test_concurrent_ratings_lose_and_duplicate_nothing_on_sqlite(
    fresh_sessions: sessionmaker[Session],
) -> None:
    study_id, accounts, items = _study_with(fresh_sessions, 3)
    assert hammer(fresh_sessions, study_id, accounts, items) == []
    _check_nothing_lost_or_duplicated(fresh_sessions, study_id, accounts, items)


@pytest.mark.postgres
def test_concurrent_ratings_lose_and_duplicate_nothing_on_postgres(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    sessions = session_factory(postgres_url)
    remove_run(sessions, "fixture")
    study_id, accounts, items = _study_with(sessions, 3)
    try:
        assert hammer(sessions, study_id, accounts, items) == []
        _check_nothing_lost_or_duplicated(sessions, study_id, accounts, items)
    finally:
        remove_run(sessions, "fixture")
