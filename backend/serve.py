"""Run the explorer with uvicorn.

``python -m backend.serve [--host H] [--port P]`` serves in this process; :func:`background_server`
starts a real server in a subprocess (end-to-end tests and benchmarks use it, so they measure
what a user gets: sockets, uvicorn, the full middleware stack).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from backend.app import create_app
from core.net import free_port
from core.settings import REPO_ROOT, Settings


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY set on every accepted connection.

    In uvicorn's multi-worker mode the connections accepted from the shared listening socket are
    not marked TCP_NODELAY, so Nagle's algorithm holds the response body until the client's
    delayed ACK of the headers: measured 44 ms per steering request with 2 workers against
    1.3 ms with one.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    workers: int = 1,
    access_log: bool = True,
) -> None:
    """Serve on ``host:port`` (loopback by default: the app has no authentication).

    ``workers`` > 1 starts that many processes (steering is CPU-bound numpy: one request per
    core); they read their settings from the environment, so ``settings`` must be None then.
    """
    if workers > 1:
        if settings is not None:
            raise ValueError("with several workers the settings come from RECSAE_* variables")
        uvicorn.run(
            "backend.app:create_app", factory=True, host=host, port=port, workers=workers,
            http=NoDelayH11Protocol, log_level="info", access_log=access_log,
        )  # fmt: skip
        return
    uvicorn.run(
        create_app(settings), host=host, port=port, http=NoDelayH11Protocol, log_level="info",
        access_log=access_log,
    )  # fmt: skip


@contextmanager
def background_server(
    settings: Settings, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30.0
) -> Iterator[str]:
    """A uvicorn subprocess serving ``settings``' database; yields its base URL.

    The child gets the settings through ``RECSAE_*`` variables (the one way Settings are read),
    and is terminated on exit. A server that does not answer within ``timeout_s`` raises with
    its stderr, so a broken startup (a failed migration, a port in use) is visible.
    """
    port = port or free_port(host)
    env = {**os.environ, **settings.as_environment()}
    cmd = [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory",
           "--host", host, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    # A file, not a pipe: an unread pipe that fills up would block the server.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stderr=log, text=True)
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited with {proc.returncode}: {log.read()}")
            try:
                if httpx.get(f"{base}/index.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on {base} did not answer within {timeout_s} s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--no-access-log", action="store_true", help="no line per request")
    args = parser.parse_args()
    serve(args.host, args.port, workers=args.workers, access_log=not args.no_access_log)


if __name__ == "__main__":
    main()
