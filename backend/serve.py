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
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from backend.app import create_app
from core.accounts import is_loopback, public_serving_refusal
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


class RefusedToServe(RuntimeError):
    """The explorer must not serve on the asked interface; the message says what to do."""


def uvicorn_proxy_options(settings: Settings) -> dict[str, Any]:
    """Believe X-Forwarded-For/-Proto only from ``RECSAE_TRUSTED_PROXIES``.

    uvicorn's own default trusts them from 127.0.0.1, so any local process (or a client behind
    a proxy that passes the header through) could pick its address and dodge per-client limits.
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": settings.trusted_proxies}


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: Settings | None = None,
    workers: int = 1,
    access_log: bool = True,
    read_only: bool = False,
    log_level: str = "info",
) -> None:
    """Serve on ``host:port``; any interface but loopback needs an admin account or read-only.

    ``workers`` > 1 starts that many processes (steering is CPU-bound numpy: one request per
    core); they read their settings from the environment, so ``settings`` must be None then.
    Raises :class:`RefusedToServe` before listening when ``host`` is public and unprotected.
    """
    if workers > 1 and settings is not None:
        raise ValueError("with several workers the settings come from RECSAE_* variables")
    if read_only:
        os.environ["RECSAE_READ_ONLY"] = "true"  # for worker processes, which read the env
    resolved = (settings or Settings()).model_copy(update={"read_only": True} if read_only else {})
    refusal = public_serving_refusal(host, resolved)
    if refusal is not None:
        raise RefusedToServe(refusal)
    if (
        not is_loopback(host)
        and resolved.allowed_hosts == Settings.model_fields["allowed_hosts"].default
    ):
        print(
            f"note: serving on {host}, but only the Host names {resolved.allowed_hosts} are "
            "answered (others get 400); set RECSAE_ALLOWED_HOSTS to the names this server is "
            "reached by",
            file=sys.stderr,
        )
    options: dict[str, Any] = {
        "host": host, "port": port, "http": NoDelayH11Protocol, "log_level": log_level,
        "access_log": access_log, **uvicorn_proxy_options(resolved),
    }  # fmt: skip
    if workers > 1:
        # Each spawned worker re-imports this module and the app before it answers uvicorn's
        # health ping; on a busy machine that took 14 s, past the 5 s default, and the workers
        # were killed and restarted forever. The protocol as an import string keeps the pickled
        # config light; the health check gets a minute.
        options["http"] = "backend.serve:NoDelayH11Protocol"
        uvicorn.run(
            "backend.app:create_app", factory=True, workers=workers,
            timeout_worker_healthcheck=60, **options,
        )  # fmt: skip
        return
    uvicorn.run(create_app(resolved), **options)


@contextmanager
def background_server(
    settings: Settings, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 120.0
) -> Iterator[str]:
    """A uvicorn subprocess serving ``settings``' database; yields its base URL.

    The child gets the settings through ``RECSAE_*`` variables (the one way Settings are read),
    and is terminated on exit. A server that does not answer within ``timeout_s`` raises with
    its stderr, so a broken startup (a failed migration, a port in use) is visible; one that
    exits says so at once. The default is generous: on a 2-core machine running four test
    processes a healthy start has taken over 30 s.
    """
    port = port or free_port(host)
    env = {**os.environ, **settings.as_environment()}
    # The same entry point as `recsae serve`, so tests see its proxy and host settings.
    cmd = [sys.executable, "-m", "backend.serve", "--host", host, "--port", str(port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
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
    parser.add_argument("--read-only", action="store_true", help="refuse every write (403)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    try:
        serve(
            args.host, args.port, workers=args.workers, access_log=not args.no_access_log,
            read_only=args.read_only, log_level=args.log_level,
        )  # fmt: skip
    except RefusedToServe as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
