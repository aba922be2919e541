"""``recsae studies``: list, export and delete human-evaluation studies (core/studies.py).

Deleting is the one way a study and its ratings leave the database, and it writes the whole
study to a JSON file first (docs/architecture.md, human work); no publish, republish or
``recsae versions remove`` touches a study.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # imported by the commands: `recsae --help` need not load SQLAlchemy
    from sqlalchemy.orm import Session, sessionmaker

app = typer.Typer(
    help="Human-evaluation studies: list them, export one to JSON, delete one (exports first).",
    no_args_is_help=True,
)

StudyArg = Annotated[int, typer.Argument(help="The study's id (see `recsae studies list`).")]


def _sessions() -> sessionmaker[Session]:
    from core.settings import get_settings
    from core.store import migrate
    from core.store.engine import session_factory

    url = get_settings().resolved_database_url
    migrate.upgrade(url)
    return session_factory(url)


def _fail(err: Exception) -> typer.Exit:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@app.command("list")
def list_command() -> None:
    """Every study: id, run and the version it sampled, status, items, ratings, name."""
    from sqlalchemy import func, select

    from core.store.schema import Rating, Run, Study, StudyItem

    with _sessions()() as session:
        current = {i: v for i, v in session.execute(select(Run.id, Run.version))}
        items = {
            i: n
            for i, n in session.execute(
                select(StudyItem.study_id, func.count()).group_by(StudyItem.study_id)
            )
        }
        ratings = {
            i: n
            for i, n in session.execute(
                select(Rating.study_id, func.count()).group_by(Rating.study_id)
            )
        }
        rows = list(session.scalars(select(Study).order_by(Study.id)))
    if not rows:
        typer.echo("no studies")
    for s in rows:
        now = current.get(s.run_id)
        moved = f" (run now v{now})" if now is not None and now != s.run_version else ""
        typer.echo(
            f"{s.id:>5}  {s.run_id} v{s.run_version or '?'}{moved}  {s.status:<6}  "
            f"{items.get(s.id, 0)} items  {ratings.get(s.id, 0)} ratings  {s.name}"
        )


@app.command("export")
def export_command(
    study: StudyArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Write a study as JSON: items (with what raters saw), annotators, ratings, their history."""
    from core.studies import StudyNotFound
    from core.study_export import export_study

    try:
        with _sessions()() as session:
            text = json.dumps(export_study(session, study), indent=1, ensure_ascii=False)
    except StudyNotFound as err:
        raise _fail(err) from err
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote study {study} to {out}")


@app.command("delete")
def delete_command(
    study: StudyArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Export the study to DATA_DIR/exports/, then delete it with its ratings (not undoable)."""
    from core.settings import get_settings
    from core.studies import StudyNotFound
    from core.study_export import delete_study

    if not yes and not typer.confirm(f"Delete study {study} and all its ratings?"):
        raise typer.Exit(1)
    try:
        path = delete_study(_sessions(), study, get_settings().data_dir / "exports")
    except (StudyNotFound, OSError) as err:
        raise _fail(err) from err
    typer.echo(f"exported study {study} to {path}, then deleted it")
