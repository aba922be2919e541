"""A throw-away PostgreSQL server on loopback: the ``postgres_url`` fixture and benchmarks/load.py.

The server is Debian's ``postgresql`` package (installed by ``scripts/setup.sh --test``), run from
a throw-away data directory; as root it runs as the ``postgres`` system user, as postgres insists.
Tests get one server per pytest process (each xdist worker starts its own, on its own free port)
and one empty database per test (:func:`fresh_database`), so no test sees another's rows.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.net import free_port


class PostgresNotInstalled(RuntimeError):
    pass


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresNotInstalled(
            "PostgreSQL is not installed: run scripts/setup.sh --test "
            "(it installs Debian's postgresql package)"
        )
    return Path(found[-1]).parent


@contextmanager
def postgres_server(database: str = "recsae_test", options: str = "") -> Iterator[str]:
    """Start a server on a free loopback port with one empty database; yields its URL and removes
    everything on exit. ``options`` go to ``postgres`` (e.g. ``-c max_connections=200``)."""
    bin_dir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="recsae-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, cwd=root)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "recsae", "-A", "trust", "--no-sync")
    # A free port can be taken between free_port() and the server's bind (another xdist worker
    # starting its own server): try another one.
    for attempt in range(3):
        port = free_port()
        started = subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
             "-w", "-o", f"-h 127.0.0.1 -p {port} -k {sock} -F {options}".rstrip(), "start"],
            capture_output=True, cwd=root,
        )  # fmt: skip
        if started.returncode == 0:
            break
        if attempt == 2:
            log = (root / "server.log").read_text(errors="replace")[-2000:]
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"postgres did not start: {started.stderr.decode()}{log}")
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                [*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                 "-U", "recsae", database],
                capture_output=True, cwd=root,
            )  # fmt: skip
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {probe.stderr.decode()}")
            time.sleep(0.3)
        yield f"postgresql+psycopg://recsae@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, cwd=root,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _admin(url: str, statement: str, database: str) -> None:
    """``statement`` with the quoted name ``database`` for ``{}``, run outside a transaction
    (CREATE / DROP DATABASE) on ``url``'s server."""
    import psycopg
    from psycopg import sql

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(database)))


@contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """An empty database ``name`` on the server of ``server_url``; yields its URL, drops it (and
    ends whatever connections are left in it) on exit."""
    from core.store.engine import engine_for

    _admin(server_url, "CREATE DATABASE {}", name)
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()  # the pooled connections of the store's cached engine
        _admin(server_url, "DROP DATABASE {} WITH (FORCE)", name)
