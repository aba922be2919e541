"""``recsae demo`` serves first and computes behind (worker/cli.py ``_serve``): the commands beside
the server start once it listens, one that ends by itself leaves the server serving, and Ctrl-C
(or SIGTERM) sent to the command alone reaches the server and every child still running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from core.net import free_port
from core.settings import REPO_ROOT

# A stand-in for the demo's pipelines: notes when it started and which signal stopped it.
CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    def stop(signum, frame):
        out.write_text(out.read_text() + f" stopped by {signal.Signals(signum).name}")
        sys.exit(0)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    out.write_text(f"started {time.time()}")
    while True:
        time.sleep(0.1)
""")

PARENT = textwrap.dedent("""
    import sys
    from worker.cli import _serve
    port, child, quick, marker = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    _serve("127.0.0.1", port, beside=[
        [sys.executable, "-c", "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text('ran')",
         quick],
        [sys.executable, "-c", child, marker],
    ])
""")


def _wait(predicate, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.1)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/index.json", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_children_start_after_the_server_and_stop_with_us(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    marker, quick = tmp_path / "child.txt", tmp_path / "quick.txt"
    env = {**os.environ, "RECSAE_DATA_DIR": str(tmp_path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(port), CHILD, str(quick), str(marker)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_answer = None
        deadline = time.monotonic() + 90
        while first_answer is None:
            assert parent.poll() is None, "the command exited before the server answered"
            assert time.monotonic() < deadline, "the explorer did not answer within 90 s"
            if _answers(port):
                first_answer = time.time()
            else:
                # nothing beside it starts before the server listens
                assert not marker.exists() and not quick.exists()
                time.sleep(0.05)
        _wait(lambda: marker.exists() and marker.read_text().startswith("started"), "child")
        _wait(lambda: quick.exists(), "the quick child ran")
        time.sleep(1)  # the quick child has ended: the server serves on
        assert _answers(port) and parent.poll() is None
        parent.send_signal(sig)
        assert parent.wait(timeout=30) == 0
        assert not _answers(port)  # the server went with it
        assert marker.read_text().endswith(f"stopped by {sig.name}")  # and so did the child
    finally:
        if parent.poll() is None:
            parent.kill()
