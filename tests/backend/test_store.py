"""The store: migrations match the schema, reads sort/filter/page exactly, publishing is atomic."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import migrate, reads
from core.store.engine import make_engine
from core.store.schema import Base
from core.store.writes import publish_run
from tests.backend.factories import fixture_rows, llm_confidence, publish_fixture, tfidf_confidence


def test_alembic_head_matches_schema(fresh_settings: Settings) -> None:
    engine = make_engine(fresh_settings.resolved_database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_is_idempotent_and_creates_the_folder(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'sub' / 'db.sqlite'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert (tmp_path / "new" / "sub" / "db.sqlite").is_file()


@pytest.fixture
def session(fresh_sessions: sessionmaker[Session]) -> Any:
    publish_fixture(fresh_sessions)
    with fresh_sessions() as s:
        yield s


def test_sort_by_confidence_puts_unverified_last_in_both_orders(session: Session) -> None:
    for order in ("desc", "asc"):
        rows, total = reads.list_latents(
            session, "fixture", sort="confidence", order=order, per_page=100
        )
        assert total == 20
        confs = [r.tfidf_confidence for r in rows]
        n_none = sum(tfidf_confidence(i) is None for i in range(20))
        assert confs[-n_none:] == [None] * n_none
        known = confs[:-n_none]
        assert known == sorted(known, reverse=order == "desc")


def test_sort_by_density_and_id(session: Session) -> None:
    rows, _ = reads.list_latents(session, "fixture", sort="density", order="desc", per_page=3)
    assert [r.idx for r in rows] == [19, 18, 17]
    rows, _ = reads.list_latents(session, "fixture", sort="id", order="asc", per_page=3)
    assert [r.idx for r in rows] == [0, 1, 2]


def test_text_filter_is_case_insensitive_and_per_method(session: Session) -> None:
    rows, total = reads.list_latents(
        session, "fixture", q="HORROR", method="tfidf", sort="id", order="asc"
    )
    expected = [i for i in range(20) if i % 5 == 0 and tfidf_confidence(i) is not None]
    assert [r.idx for r in rows] == expected and total == len(expected)
    # "films about" only exists in LLM concepts.
    _, total_tfidf = reads.list_latents(session, "fixture", q="films about", method="tfidf")
    _, total_llm = reads.list_latents(session, "fixture", q="films about", method="llm")
    _, total_any = reads.list_latents(session, "fixture", q="films about")
    n_llm = sum(llm_confidence(i) is not None for i in range(20))
    assert (total_tfidf, total_llm, total_any) == (0, n_llm, n_llm)


def test_filter_escapes_like_wildcards(session: Session) -> None:
    assert reads.list_latents(session, "fixture", q="%")[1] == 0
    assert reads.list_latents(session, "fixture", q="_")[1] == 0


def test_min_confidence_and_pagination(session: Session) -> None:
    rows, total = reads.list_latents(session, "fixture", min_confidence=0.8, method="tfidf")
    expected = {i for i in range(20) if (tfidf_confidence(i) or 0) >= 0.8}
    assert {r.idx for r in rows} == expected and total == len(expected)
    pages = [
        [
            r.idx
            for r in reads.list_latents(
                session, "fixture", sort="id", order="asc", page=p, per_page=7
            )[0]
        ]
        for p in (1, 2, 3, 4)
    ]
    assert pages == [list(range(7)), list(range(7, 14)), list(range(14, 20)), []]


def test_bad_arguments_are_loud(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown sort 'name'"):
        reads.list_latents(session, "fixture", sort="name")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown concept method"):
        reads.list_latents(session, "fixture", method="gpt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be >= 1"):
        reads.list_latents(session, "fixture", page=0)


def test_latents_for_item_counts_top10_and_top1(session: Session) -> None:
    rows = fixture_rows()
    item = 3
    recommending = [c for c in rows["cases"] if item in c["top_items"] or c["top1_item"] == item]
    found = reads.latents_for_item(session, "fixture", item)
    assert found.n_cases == len(recommending)
    assert found.n_top1 == sum(c["top1_item"] == item for c in recommending)
    expected: dict[int, list[float]] = {}
    for c in recommending:
        for lat, val in zip(c["latent_idx"], c["latent_val"], strict=True):
            if val > 0:
                expected.setdefault(lat, []).append(val)
    assert {h.latent_idx: h.n_cases for h in found.latents} == {
        k: len(v) for k, v in expected.items()
    }
    for hit in found.latents:
        assert hit.mean_activation == pytest.approx(sum(expected[hit.latent_idx]) / hit.n_cases)
    assert [h.n_cases for h in found.latents] == sorted(
        (h.n_cases for h in found.latents), reverse=True
    )


def test_examples_concepts_and_items(session: Session) -> None:
    examples = reads.latent_examples(session, "fixture", 2)
    assert len(examples) == 6
    assert [e.activation for e in examples] == sorted(
        (e.activation for e in examples), reverse=True
    )
    history = reads.latent_concepts(session, "fixture", 2)
    assert [c.method for c in history] == ["llm", "tfidf"]  # newest first
    items = reads.items_by_idx(session, "fixture", [1, 1, 5, 999])
    assert sorted(items) == [1, 5] and items[5].title == "Movie 05"
    assert reads.items_by_idx(session, "fixture", []) == {}


def test_latents_by_idx_is_one_query_for_many(session: Session) -> None:
    statements: list[str] = []
    engine = session.get_bind()
    listen = "before_cursor_execute"

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, listen, count)
    try:
        found = reads.latents_by_idx(session, "fixture", [5, 1, 5, 999])
    finally:
        event.remove(engine, listen, count)
    assert len(statements) == 1
    assert sorted(found) == [1, 5] and found[5].tfidf_confidence == tfidf_confidence(5)
    assert reads.latents_by_idx(session, "fixture", []) == {}


def test_steering_rows_are_plain_data(session: Session) -> None:
    rows = reads.steering_rows(session, "fixture")
    expected = fixture_rows()
    assert sorted(rows.items) == [
        reads.ItemText(i["idx"], i["title"], i["text"]) for i in expected["items"]
    ]
    (user,) = [u for u in rows.users if u.idx == 3]
    assert user == reads.UserSplit(3, [3, 4, 5, 6, 7], 8, 9, "test")
    assert dict(rows.tfidf_concepts)[3] is None and dict(rows.tfidf_concepts)[0] == "horror"


def test_failed_publish_keeps_previous_version(fresh_sessions: sessionmaker[Session]) -> None:
    publish_fixture(fresh_sessions)
    broken = fixture_rows()
    broken["run"] = {**broken["run"], "dataset": "replacement"}
    broken["cases"] = [*broken["cases"], {**broken["cases"][1], "user_idx": 0}]  # duplicate key
    with pytest.raises(IntegrityError):
        publish_run(fresh_sessions, **broken)
    with fresh_sessions() as s:
        run = reads.get_run(s, "fixture")
        assert run is not None and run.dataset == "tiny-movies"
        assert reads.list_latents(s, "fixture")[1] == 20


def test_failed_publish_of_new_run_leaves_nothing(fresh_sessions: sessionmaker[Session]) -> None:
    broken = fixture_rows(run_id="half")
    broken["examples"][-1]["latent_idx"] = 999  # no such latent: FK violation at the end
    with pytest.raises(IntegrityError):
        publish_run(fresh_sessions, **broken)
    with fresh_sessions() as s:
        assert reads.get_run(s, "half") is None
        assert reads.list_latents(s, "half")[1] == 0
        assert reads.items_by_idx(s, "half", range(12)) == {}


def test_concept_explained_on_an_earlier_version_stays_history(
    fresh_sessions: sessionmaker[Session],
) -> None:
    """A web explanation that finishes after a republish describes the version it explained:
    it is stored with that version and does not change the current summary."""
    from sqlalchemy import update

    from core.store.schema import Concept, Latent, Run
    from core.store.writes import add_concept

    publish_fixture(fresh_sessions)
    with fresh_sessions.begin() as s:
        run = s.get(Run, "fixture")
        assert run is not None
        run.version = 2  # as a republish with the same SAE leaves it: every concept current
        s.execute(update(Concept).where(Concept.run_id == "fixture").values(run_version=2))
        before = s.get(Latent, ("fixture", 0))
        assert before is not None
        summary = (before.llm_confidence, before.llm_concept)
    row = {
        "run_id": "fixture", "latent_idx": 0, "method": "llm", "text": "stale", "terms": [],
        "confidence": 1.0, "status": "verified", "details": {}, "run_version": 1,
    }  # fmt: skip
    concept_id = add_concept(fresh_sessions, row)
    with fresh_sessions() as s:
        stored = s.get(Concept, concept_id)
        latent = s.get(Latent, ("fixture", 0))
        assert stored is not None and latent is not None
        assert stored.run_version == 1 and stored.source == "web"
        assert (latent.llm_confidence, latent.llm_concept) == summary
