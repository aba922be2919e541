"""A throw-away PostgreSQL server on loopback: the ``postgres_url`` fixture and benchmarks/load.py.

The server is Debian's ``postgresql`` package (installed by ``scripts/setup.sh --test``), run from
a throw-away data directory; as root it runs as the ``postgres`` system user, as postgres insists.
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
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, cwd=root)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "recsae", "-A", "trust", "--no-sync")
    run(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
        "-o", f"-h 127.0.0.1 -p {port} -k {sock} -F {options}".rstrip(), "start",
    )  # fmt: skip
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
