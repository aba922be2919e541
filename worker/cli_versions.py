"""``recsae versions``: list a run's published versions, remove old ones, publish again.

A version is a read-only directory ``runs/<run id>/versions/<n>/`` written at publish
(:mod:`core.versions`; docs/architecture.md, run versions). The database points at one of them,
the *current* version; earlier ones the database pointed at are *published*; a version whose
publish failed or was killed is *unpublished* (the explorer never read it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.rundir import ArtifactError
from core.settings import Settings, get_settings
from core.versions import Version, list_versions, published_numbers, remove_version
from worker.errors import ConfigError

app = typer.Typer(
    help="List, remove and republish a run's versions (read-only directories runs/RUN/versions/N).",
    no_args_is_help=True,
)

RunArg = Annotated[str, typer.Argument(help="The run id (e.g. ml-latest-small-bprmf).")]


def _current_versions(settings: Settings) -> dict[str, int]:
    """Run id -> the version the database serves (empty when there is no database yet)."""
    from core.store import reads
    from core.store.engine import session_factory
    from core.store.migrate import upgrade

    url = settings.resolved_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    upgrade(url)
    with session_factory(url)() as session:
        return {run.id: run.version for run in reads.list_runs(session)}


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def status_of(version: Version, current: int | None, published: dict[int, str]) -> str:
    if version.number == current:
        return "current"
    return "published" if version.number in published else "unpublished"


def _run_root(settings: Settings, run_id: str) -> Path:
    root = settings.runs_dir / run_id
    if not root.is_dir():
        known = sorted(p.name for p in settings.runs_dir.glob("*") if p.is_dir())
        raise typer.BadParameter(f"no run {run_id!r} in {settings.runs_dir}; runs: {known}")
    return root


@app.command("list")
def list_command(run: Annotated[str | None, typer.Argument(help="Only this run.")] = None) -> None:
    """Each version: number, status (current / published / unpublished), created, size, files."""
    settings = get_settings()
    current = _current_versions(settings)
    if run is not None:
        roots = [_run_root(settings, run)]
    else:
        roots = sorted(p for p in settings.runs_dir.glob("*") if (p / "versions").is_dir())
    if not roots:
        typer.echo(f"no run versions in {settings.runs_dir}")
    for root in roots:
        versions = list_versions(root)
        published = published_numbers(root)
        now = current.get(root.name)
        typer.echo(f"run {root.name} (current: {'v' + str(now) if now else 'not published'})")
        typer.echo(f"  {'version':>7}  {'status':<11}  {'created':<25}  {'size':>9}  files")
        for v in versions:
            typer.echo(
                f"  {v.number:>7}  {status_of(v, now, published):<11}  "
                f"{v.created_at or '?':<25}  {_size(v.size):>9}  {v.n_files}"
            )


@app.command("remove")
def remove_command(
    run: RunArg, version: Annotated[int, typer.Argument(help="The version number.")]
) -> None:
    """Delete one version's directory (never the current one: the explorer serves it)."""
    settings = get_settings()
    root = _run_root(settings, run)
    try:
        removed = remove_version(root, version, _current_versions(settings).get(run))
    except ArtifactError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    typer.echo(f"removed version {removed.number} of run {run} ({_size(removed.size)})")


@app.command("publish")
def publish_command(
    run: RunArg,
    discard_history: Annotated[
        bool,
        typer.Option(
            "--discard-history",
            help="Publish even when concepts written from the web or by the LLM name latents the "
            "new SAE no longer has: they are first written to a JSON file in the run's directory.",
        ),
    ] = False,
) -> None:
    """Publish the run's working directory again as a new version (its stages must be done)."""
    import json
    import time

    from worker.config import STAGES, RunConfig
    from worker.run import Run
    from worker.stages.publish import publish

    settings = get_settings()
    config_path = _run_root(settings, run) / "config.json"
    if not config_path.is_file():
        raise typer.BadParameter(f"{config_path} is missing: run `recsae run` for this run first")
    config = RunConfig(**json.loads(config_path.read_text()))

    target = Run(config, settings)
    # done: its marker is there and its files are what it wrote (docs/architecture.md, stage
    # markers)
    unfinished = [s for s in STAGES[:-1] if target.unfinished(s) is not None]
    if unfinished:  # a killed or failed run: its working directory is not one run's results
        typer.secho(
            f"error: run {run} is not finished in {target.dir} (not done: "
            f"{', '.join(unfinished)}); finish it with `recsae run` first",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    target.discard_history = discard_history
    start = time.perf_counter()
    try:
        publish(target)
    except (ConfigError, ArtifactError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    target.mark_done("publish", time.perf_counter() - start)
