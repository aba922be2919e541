"""Alembic environment: one schema (core.store.schema), one URL source.

The URL is ``sqlalchemy.url`` when a caller sets it (``core.store.migrate.upgrade``), else the
one ``Settings`` resolves, so the CLI (``alembic upgrade head``) and the app migrate the same DB.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

from core.settings import Settings
from core.store.engine import make_engine
from core.store.schema import Base

config = context.config
target_metadata = Base.metadata

# Only the CLI configures logging: called from the app or the worker, fileConfig would
# silently replace their (uvicorn's, pytest's) logging setup.
if config.config_file_name is not None and not config.attributes.get("programmatic"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) without a connection."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # make_engine, not a bare create_engine: the same SQLite pragmas as the app and the worker.
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds a table by copy, drop and rename; with foreign keys on, the
                # drop would cascade into the rows that reference it (ratings, study items).
                # SQLite only takes this pragma outside a transaction: before the one below.
                connection.execute(text("PRAGMA foreign_keys=OFF"))
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:  # checked before the commit: a broken result is rolled back
                    broken = connection.execute(text("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"migrating would break foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
