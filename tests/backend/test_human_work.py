"""Human work outlives every run version (docs/architecture.md, human work): publishing again,
with the same or another SAE, never deletes or alters a study, its items, assignments, ratings,
their history or the invites tied to it; a study keeps what its raters saw; ids are never handed
out twice; deleting a run with studies is refused and deleting a study exports it first; making a
study is all or nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from core import invites, studies, study_export
from core.rundir import SAE_FILES
from core.store import migrate
from core.store.engine import session_factory
from core.store.schema import (
    Account,
    Invite,
    Rating,
    RatingChange,
    Run,
    Study,
    StudyAnnotator,
    StudyItem,
)
from core.store.writes import RunHasStudies, delete_run, publish_run
from tests.backend.accounts import create_account, signed_in
from tests.backend.conftest import make_settings
from tests.backend.factories import fixture_rows

RUN = "human-work"
HUMAN_TABLES = (Study, StudyItem, StudyAnnotator, Rating, RatingChange, Invite)


def publish(sessions: sessionmaker[Session], sae: str, title_prefix: str = "") -> int:
    """Publish the small factory run with SAE digests ``sae * 64`` (another letter: another SAE)
    and, optionally, other item titles (what the run's examples would show now)."""
    rows = fixture_rows(run_id=RUN)
    rows["run"] |= {"digests": {**{f: sae * 64 for f in SAE_FILES}, "vectors.safetensors": "c"}}
    for item in rows["items"]:
        item["title"] = title_prefix + item["title"]
    return publish_run(sessions, **rows)


def snapshot(sessions: sessionmaker[Session]) -> dict[str, list[dict[str, Any]]]:
    """Every row people wrote, every column, in a stable order."""
    out: dict[str, list[dict[str, Any]]] = {}
    with sessions() as session:
        for model in HUMAN_TABLES:
            table = model.__table__
            keys = [c.name for c in table.columns]
            rows = session.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            out[table.name] = [{k: row[k] for k in keys} for row in rows]
    return out


def human_work(sessions: sessionmaker[Session]) -> int:
    """A study of the run with two annotators, ratings, a changed rating, a skip and an invite;
    returns the study's id."""
    names = [create_account(sessions, "annotator").username for _ in range(2)]
    study_id = studies.create_study(sessions, RUN, "keep me", size=5, seed=3, annotators=names)
    with sessions() as session:
        ids = [session.scalar(select(Account.id).filter_by(username=n)) for n in names]
        items = list(session.scalars(select(StudyItem).filter_by(study_id=study_id)))
    assert len(items) >= 3
    for who in ids:
        assert who is not None
        for n, item in enumerate(items):
            studies.rate(sessions, study_id, who, item.latent_idx, item.concept_id, 1 + n % 4)
        first = items[0]
        studies.rate(sessions, study_id, who, first.latent_idx, first.concept_id, 4)
        studies.rate(
            sessions, study_id, who, items[1].latent_idx, items[1].concept_id, None, "unclear"
        )
    invites.create_invite(sessions, "annotator", study_id=study_id)
    return study_id


def test_republishing_keeps_every_study_rating_change_and_invite(
    sessions: sessionmaker[Session],
) -> None:
    """Finding 1: `recsae versions publish` (publish_run) deleted the run row, and the cascade
    took studies, items, assignments, ratings, their changes and invites with it."""
    assert publish(sessions, "a") == 1
    study_id = human_work(sessions)
    before = snapshot(sessions)
    assert {t: len(rows) for t, rows in before.items()} | {"studies": 1} == {
        "studies": 1, "study_items": len(before["study_items"]), "study_annotators": 2,
        "ratings": len(before["ratings"]), "rating_changes": len(before["rating_changes"]),
        "invites": 1,
    }  # fmt: skip
    assert len(before["ratings"]) >= 6 and len(before["rating_changes"]) > len(before["ratings"])
    assert publish(sessions, "a") == 2  # the same SAE again
    assert snapshot(sessions) == before
    assert publish(sessions, "b", title_prefix="NEW ") == 3  # another SAE, other titles
    assert snapshot(sessions) == before
    with sessions() as session:
        study = session.get(Study, study_id)
        run = session.get(Run, RUN)
        assert study is not None and run is not None
        assert (study.run_version, run.version) == (1, 3)


def test_a_study_keeps_the_examples_its_raters_saw(sessions: sessionmaker[Session]) -> None:
    publish(sessions, "a")
    study_id = human_work(sessions)
    with sessions() as session:
        shown = {i.position: i.shown for i in session.scalars(select(StudyItem))}
    titles = [
        t for s in shown.values() for g in (s or {}).values() for e in g for t in e["history"]
    ]
    assert titles and not any(t.startswith("NEW ") for t in titles)
    publish(sessions, "b", title_prefix="NEW ")
    with sessions() as session:
        assert {i.position: i.shown for i in session.scalars(select(StudyItem))} == shown
        assert session.scalar(select(Study.run_version).where(Study.id == study_id)) == 1


def test_study_pages_read_after_the_run_moved_on(tmp_path: Path) -> None:
    """`GET /studies/1.json` answered 404 after a republish; now the study is there, marked with
    the version it sampled, and its annotation page shows the examples of that version."""
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    publish(sessions, "a")
    with (
        TestClient(create_app(settings)) as admin,
        TestClient(create_app(settings)) as rater,
    ):
        signed_in(admin, "admin")
        name = signed_in(rater, "annotator").account.username
        study_id = studies.create_study(sessions, RUN, "moved on", size=5, annotators=[name])
        publish(sessions, "b", title_prefix="NEW ")
        page = admin.get(f"/studies/{study_id}.json")
        assert page.status_code == 200, page.text
        note = "on version 1; the run is now on version 2"
        assert page.json()["study"]["version_note"] == note
        assert note in admin.get(f"/studies/{study_id}").text
        annotate = rater.get(f"/studies/{study_id}/annotate.json?n=0")
        assert annotate.status_code == 200, annotate.text
        examples = annotate.json()["examples"]
        titles = [t for g in examples.values() for e in g for t in e["history"]]
        assert titles and not any(t.startswith("NEW ") for t in titles)


def test_deleting_a_run_with_studies_is_refused_and_a_study_is_exported_first(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    publish(sessions, "a")
    study_id = human_work(sessions)
    before = snapshot(sessions)
    with pytest.raises(RunHasStudies, match="studies delete"):
        with sessions.begin() as session:
            delete_run(session, RUN)
    assert snapshot(sessions) == before
    path = study_export.delete_study(sessions, study_id, tmp_path / "exports")
    export = json.loads(path.read_text())
    assert export["study"]["id"] == study_id
    assert len(export["ratings"]) == len(before["ratings"])
    assert len(export["rating_changes"]) == len(before["rating_changes"])
    assert sorted(r["value"] for r in export["ratings"] if r["value"]) == sorted(
        r["value"] for r in before["ratings"] if r["value"]
    )
    after = snapshot(sessions)
    assert [len(after[t]) for t in ("studies", "study_items", "ratings", "rating_changes")] == [
        0, 0, 0, 0,
    ]  # fmt: skip
    assert len(after["invites"]) == 1 and after["invites"][0]["study_id"] is None


def test_ids_are_never_handed_out_twice(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """On SQLite the next study reused id 1 after the cascade deleted study 1."""
    publish(sessions, "a")
    first = human_work(sessions)
    with sessions() as session:
        last_rating = max(session.scalars(select(Rating.id)))
        last_change = max(session.scalars(select(RatingChange.id)))
    study_export.delete_study(sessions, first, tmp_path)
    second = human_work(sessions)
    assert second > first
    with sessions() as session:
        assert min(session.scalars(select(Rating.id))) > last_rating
        assert min(session.scalars(select(RatingChange.id))) > last_change


def test_a_study_with_an_unknown_annotator_is_not_created(sessions: sessionmaker[Session]) -> None:
    """Finding 7: `annotators=otann1,nosuchuser` answered 400 and created the study anyway."""
    publish(sessions, "a")
    known = create_account(sessions, "annotator").username
    with pytest.raises(studies.StudyError, match="nosuchuser.*nothing was created"):
        studies.create_study(sessions, RUN, "half", annotators=[known, "nosuchuser"])
    assert snapshot(sessions)["studies"] == []


def test_the_form_with_an_unknown_annotator_creates_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    sessions = session_factory(settings.resolved_database_url)
    publish(sessions, "a")
    with TestClient(create_app(settings)) as client:
        signed_in(client, "admin")
        known = create_account(sessions, "annotator").username
        form = {"run_id": RUN, "name": "half", "annotators": f"{known},nosuchuser"}
        answer = client.post("/studies", data=form, follow_redirects=False)
        assert answer.status_code == 400 and "nosuchuser" in answer.text
        assert snapshot(sessions)["studies"] == []
        answer = client.post("/studies", data={**form, "annotators": known}, follow_redirects=False)
        assert answer.status_code == 303
    with sessions() as session:
        assert len(list(session.scalars(select(StudyAnnotator)))) == 1


def _database(request: pytest.FixtureRequest, tmp_path: Path, engine: str) -> str:
    """An empty database: a SQLite file, or a new database on the tests' PostgreSQL server."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(request.getfixturevalue("postgres_url"))
    name = f"migrate_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrating_an_old_database_keeps_its_studies_and_ends_the_cascade(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A database made before this schema (revision 0004) keeps every study, rating and invite,
    learns the version each study sampled, and a publish afterwards deletes none of them."""
    from alembic import command
    from sqlalchemy import create_engine, text

    url = _database(request, tmp_path, engine)
    command.upgrade(migrate.alembic_config(url), "0004")
    old = create_engine(url)
    with old.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, dataset, recommender, status, created_at, artifact_dir, "
                "version, n_users, n_items, n_latents, k, item_category, item_name, config, "
                "metrics) VALUES (:id, 'd', 'sasrec', 'ready', :t, '/x', 4, 1, 1, 1, 1, 'items', "
                "'item', '{}', '{}')"
            ),
            {"id": RUN, "t": "2026-01-01T00:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO accounts (id, username, password_hash, role, disabled, created_at) "
                "VALUES (1, 'old', 'x', 'annotator', false, :t)"
            ),
            {"t": "2026-01-01T00:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO studies (id, run_id, name, seed, size, min_confidence, methods, "
                "status, created_at) VALUES (7, :id, 'old study', 0, 1, 0.8, 'both', 'open', :t)"
            ),
            {"id": RUN, "t": "2026-01-01T00:00:00+00:00"},
        )
        conn.execute(
            text("INSERT INTO study_items VALUES (7, 0, 3, 99, 'tfidf', 'war', 0.9, NULL)")
        )
        conn.execute(
            text(
                "INSERT INTO ratings (id, study_id, account_id, latent_idx, concept_id, value, "
                "updated_at) VALUES (5, 7, 1, 3, 99, 2, :t)"
            ),
            {"t": "2026-01-01T00:00:00+00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO invites (token_hash, role, created_at, expires_at, study_id) "
                "VALUES ('h', 'annotator', :t, :t, 7)"
            ),
            {"t": "2026-01-01T00:00:00+00:00"},
        )
    old.dispose()
    migrate.upgrade(url)
    sessions = session_factory(url)
    with sessions() as session:
        study = session.get(Study, 7)
        assert study is not None and study.run_version == 4
        assert [r.value for r in session.scalars(select(Rating))] == [2]
        assert [i.study_id for i in session.scalars(select(Invite))] == [7]
    publish(sessions, "a")
    with sessions() as session:
        assert session.scalar(select(Run.version).where(Run.id == RUN)) == 5
        assert [s.id for s in session.scalars(select(Study))] == [7]
        assert [r.value for r in session.scalars(select(Rating))] == [2]
    with pytest.raises(RunHasStudies):
        with sessions.begin() as session:
            delete_run(session, RUN)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # the database itself refuses: no cascade left
        with sessions.begin() as session:
            session.execute(text("DELETE FROM runs"))
    engine_of = sessions.kw["bind"]
    engine_of.dispose()


def test_the_cli_lists_exports_and_deletes_a_study_only_after_exporting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recsae studies delete N` writes DATA_DIR/exports/study-N-*.json before deleting."""
    from typer.testing import CliRunner

    from core.settings import get_settings
    from worker.cli import app

    monkeypatch.setenv("RECSAE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RECSAE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        migrate.upgrade(settings.resolved_database_url)
        sessions = session_factory(settings.resolved_database_url)
        publish(sessions, "a")
        study_id = human_work(sessions)
        n_ratings = len(snapshot(sessions)["ratings"])
        runner = CliRunner()
        listed = runner.invoke(app, ["studies", "list"])
        assert listed.exit_code == 0 and f"{RUN} v1" in listed.output, listed.output
        assert f"{n_ratings} ratings  keep me" in listed.output
        refused = runner.invoke(app, ["studies", "delete", str(study_id)], input="n\n")
        assert refused.exit_code == 1 and len(snapshot(sessions)["ratings"]) == n_ratings
        missing = runner.invoke(app, ["studies", "delete", "999", "--yes"])
        assert missing.exit_code == 1 and "no study 999" in missing.output
        done = runner.invoke(app, ["studies", "delete", str(study_id), "--yes"])
        assert done.exit_code == 0, done.output
        (export,) = (tmp_path / "exports").glob(f"study-{study_id}-*.json")
        assert len(json.loads(export.read_text())["ratings"]) == n_ratings
        assert snapshot(sessions)["ratings"] == []
    finally:
        get_settings.cache_clear()
