"""Relocatable data directories (docs/architecture.md, run versions): ``Run.artifact_dir`` is
stored relative to the data directory, so a copied data directory serves its own files, and
migration 0006 converts the absolute paths written before."""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from backend.app import create_app
from backend.steering import clear_cache
from backend.steering.cache import DATA_DIR, published
from core.rundir import ArtifactError
from core.settings import Settings
from core.store import migrate, reads
from core.store.engine import engine_for, session_factory
from core.store.schema import Run
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.pipeline import RunConfig, run_pipeline

RUN_ID = "syn-bprmf"


def settings_for(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'recsae.db'}",
        allowed_hosts=["testserver"],
    )


def mapped_files() -> list[str]:
    """The files this process has memory-mapped (/proc/self/maps), as the kernel names them."""
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            out.append(parts[5])
    return out


def remove_tree(path: Path) -> None:
    """Delete a data directory whose published versions are read-only."""
    for d in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(d.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(path)


@pytest.fixture
def no_cached_engines() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def test_a_copied_data_directory_serves_its_own_files(tmp_path: Path, no_cached_engines) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    raw, _ = generate(SyntheticConfig(n_users=200, n_items=60, n_tags=4, mean_history=12, seed=3))
    config = RunConfig(
        recommender="bprmf", dataset_format="generic",
        dataset_path=str(write_generic_csv(raw, tmp_path / "csv")), dataset_name="syn",
        sae_scale=1, sae_k=4, recommender_overrides={"epochs": 1, "threads": 1},
        sae_overrides={"max_epochs": 2},
    )  # fmt: skip
    settings_a = settings_for(a)
    run_pipeline(config, settings=settings_a, log=lambda _: None)
    with session_factory(settings_a.resolved_database_url)() as session:
        run = reads.get_run(session, RUN_ID)
        assert run is not None
        assert run.artifact_dir == f"runs/{RUN_ID}/versions/1"  # what publish stored
    engine_for(settings_a.resolved_database_url).dispose()  # SQLite's WAL folded into the file

    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    remove_tree(a)  # the original is gone: only B's files can answer
    assert not a.exists()

    settings_b = settings_for(b)
    with TestClient(create_app(settings_b)) as client:
        page = client.get(f"/runs/{RUN_ID}/users/0", headers={"accept": "text/html"})
        user = client.get(f"/runs/{RUN_ID}/users/0.json")
        steer = client.post(
            f"/api/runs/{RUN_ID}/users/0/steer", json={"edits": [{"latent": 1, "value": 0.5}]}
        )
        for response in (page, user, steer):
            assert response.status_code == 200, response.text[:300]
        assert user.json()["steer"]["items"] and steer.json()["items"]
        vectors = str(b / "runs" / RUN_ID / "versions" / "1" / "vectors.safetensors")
        maps = mapped_files()
        assert vectors in maps, [m for m in maps if "safetensors" in m]
        assert not [m for m in maps if m.startswith(str(a) + "/")]
    engine_for(settings_b.resolved_database_url).dispose()


# --- migration 0006 ----------------------------------------------------------------------------

ROWS = {  # run id -> (artifact_dir before, after migration 0006)
    "r1": ("/old/var/runs/r1/versions/3", "runs/r1/versions/3"),
    "r2": ("/srv/data/runs/r2", "runs/r2"),  # published before versions: its working directory
    "r3": ("/old/var/runs/r3/versions/12/", "runs/r3/versions/12"),
    "r4": ("/old/var/runs/runs/r4/versions/1", "runs/r4/versions/1"),  # the last runs/ counts
    "r5": ("/elsewhere/r5/v1", "/elsewhere/r5/v1"),  # not under a runs/ folder: kept
    "r6": ("/old/var/runs/other-run/versions/1", "/old/var/runs/other-run/versions/1"),
    "r7": ("/old/var/runs/r7/versions/1/sae", "/old/var/runs/r7/versions/1/sae"),
    "r8": ("runs/r8/versions/2", "runs/r8/versions/2"),  # relative already
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _runs_table(connection: sa.Connection) -> sa.Table:
    return sa.Table("runs", sa.MetaData(), autoload_with=connection)


def stored_dirs(url: str) -> dict[str, str]:
    with engine_for(url).connect() as connection:
        runs = _runs_table(connection)
        return dict(connection.execute(sa.select(runs.c.id, runs.c.artifact_dir)).all())


def test_migration_0006_makes_absolute_artifact_dirs_relative(database_url: str) -> None:
    config = migrate.alembic_config(database_url)
    command.upgrade(config, "0005")
    with engine_for(database_url).begin() as connection:
        runs = _runs_table(connection)
        connection.execute(
            runs.insert(),
            [
                {"id": run_id, "dataset": "d", "recommender": "bprmf", "status": "published",
                 "created_at": datetime.now(UTC), "artifact_dir": before, "n_users": 1,
                 "n_items": 1, "n_latents": 1, "k": 1, "item_category": "movies",
                 "item_name": "movie", "config": {}, "metrics": {}, "version": 1}
                for run_id, (before, _) in ROWS.items()
            ],
        )  # fmt: skip
    command.upgrade(config, "0006")
    assert stored_dirs(database_url) == {run_id: after for run_id, (_, after) in ROWS.items()}

    # Down again: the relative ones become absolute under the data directory it is given ...
    with pytest.raises(RuntimeError, match="-x data_dir="):
        command.downgrade(config, "0005")
    config.cmd_opts = argparse.Namespace(x=["data_dir=/new/var"])
    command.downgrade(config, "0005")
    down = stored_dirs(database_url)
    assert (
        down["r1"] == "/new/var/runs/r1/versions/3" and down["r8"] == "/new/var/runs/r8/versions/2"
    )
    assert down["r5"] == "/elsewhere/r5/v1" and down["r6"] == ROWS["r6"][0]
    engine_for(database_url).dispose()


def test_a_relative_artifact_dir_resolves_against_the_sessions_data_directory(
    tmp_path: Path,
) -> None:
    run = Run(id="r", version=2, artifact_dir="runs/r/versions/2", digests=None)
    with Session(info={DATA_DIR: tmp_path / "B"}) as session:
        assert published(session, run).dir == tmp_path / "B" / "runs" / "r" / "versions" / "2"
    absolute = Run(id="r", version=1, artifact_dir=str(tmp_path / "A" / "r"), digests=None)
    with Session(info={DATA_DIR: tmp_path / "B"}) as session:
        assert published(session, absolute).dir == tmp_path / "A" / "r"  # older rows: as stored
    with Session() as session, pytest.raises(ArtifactError, match="opened without one"):
        published(session, run)
