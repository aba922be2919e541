"""Bring a database to the newest schema with Alembic, from code.

The worker calls :func:`upgrade` before publishing and the app at startup, so a fresh SQLite
file or an old database is always on the schema the code reads (``migrations/versions``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.settings import REPO_ROOT

ALEMBIC_INI = REPO_ROOT / "alembic.ini"


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that leaves the caller's logging alone."""
    if not ALEMBIC_INI.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ALEMBIC_INI}: is the repo complete?")
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    # ConfigParser interpolation: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["programmatic"] = True
    return config


def upgrade(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url``; creates the SQLite file's folder if needed."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
