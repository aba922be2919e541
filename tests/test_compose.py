"""docker-compose.yml as the design card draws it (issue 12 item 5; docs/scaling.md).

No Docker engine runs here, so the file's structure is checked as data (PyYAML), and the very
commands its ``migrate``, ``worker`` and ``backend`` services run, read from the file and
interpolated the way compose does, run outside Docker against Debian's PostgreSQL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from core.net import free_port

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
SECRETS = ("RECSAE_DB_PASSWORD", "RECSAE_ADMIN_PASSWORD")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class Unset(KeyError):
    """A ``${NAME:?message}`` variable compose would refuse to start without."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` (any YAML node) with compose's variable syntax substituted from ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op is not None and op.endswith("?") and missing:
            raise Unset(f"{name}: {arg}")
        if op is not None and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VAR.sub(sub, value)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    return services


def test_compose_has_the_design_cards_services_and_volumes() -> None:
    data = compose()
    assert set(data["services"]) == {"db", "migrate", "worker", "jobs", "backend", "llm"}
    assert {"pgdata", "artifacts"} <= set(data["volumes"])
    s = data["services"]
    assert s["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(s["db"]["healthcheck"]["test"])
    assert "pgdata:/var/lib/postgresql/data" in s["db"]["volumes"]
    assert s["migrate"]["command"] == ["alembic", "upgrade", "head"]
    for one_shot in ("migrate", "worker"):
        assert s[one_shot]["restart"] == "no"
    assert s["worker"]["command"][:2] == ["recsae", "run"]
    assert "artifacts:/var/recsae" in s["worker"]["volumes"]  # the worker writes versions
    assert "artifacts:/var/recsae:ro" in s["backend"]["volumes"]  # the explorer only reads them
    # the explorer's LLM jobs (docs/jobs.md): a service of their own, not the server's child
    assert s["jobs"]["command"] == ["recsae", "worker"] and s["jobs"]["restart"] == "unless-stopped"
    assert "--no-job-worker" in s["backend"]["command"][-1]
    assert s["llm"]["profiles"] == ["llm"]  # optional
    llm_command = " ".join(s["llm"]["command"])
    assert "--model /models/" in llm_command and "--host 0.0.0.0" in llm_command
    assert any(v.endswith(":/models:ro") for v in s["llm"]["volumes"])
    assert "healthcheck" in s["llm"]


def test_compose_backend_waits_for_a_healthy_db_and_a_finished_migration() -> None:
    s = services()
    assert s["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("backend", "worker", "jobs"):
        assert s[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert "worker" not in s["backend"]["depends_on"]  # the explorer serves while it computes


def test_compose_worker_is_cpu_limited_and_backend_has_several_workers() -> None:
    s = interpolate(services(), dict.fromkeys(SECRETS, "x"))
    assert 0 < float(s["worker"]["cpus"]) < 2  # leaves the backend a core of two
    command = s["backend"]["command"][-1].split()
    assert command[command.index("serve") - 1] == "recsae"
    assert int(command[command.index("--workers") + 1]) >= 2


def test_compose_defaults_no_secret() -> None:
    text = COMPOSE.read_text()
    for secret in (*SECRETS, "POSTGRES_PASSWORD"):
        assert not re.search(rf"\$\{{{secret}:?-", text), f"{secret} has a default"
    with pytest.raises(Unset, match="RECSAE_DB_PASSWORD"):
        interpolate(services()["db"], {})
    with pytest.raises(Unset, match="RECSAE_ADMIN_PASSWORD"):
        interpolate(services()["backend"], {"RECSAE_DB_PASSWORD": "x"})
    s = services()
    assert "${RECSAE_DB_PASSWORD:?" in s["db"]["environment"]["POSTGRES_PASSWORD"]
    assert "${RECSAE_DB_PASSWORD:?" in s["backend"]["environment"]["RECSAE_DATABASE_URL"]
    assert "${RECSAE_ADMIN_PASSWORD:?" in s["backend"]["environment"]["RECSAE_ADMIN_PASSWORD"]


def test_compose_ports_are_on_loopback_unless_told() -> None:
    published = [p for s in services().values() for p in s.get("ports", [])]
    assert published, "the backend publishes a port"
    for port in published:
        assert port.startswith("${RECSAE_BIND:-127.0.0.1}:"), port
        assert interpolate(port, {}).startswith("127.0.0.1:")
    assert interpolate(published[0], {"RECSAE_BIND": "0.0.0.0"}).startswith("0.0.0.0:")


# -- the same commands outside Docker ------------------------------------------------------


def _service(name: str, env: dict[str, str], overrides: dict[str, str]) -> tuple[list, dict]:
    """(command, environment) of a compose service as this machine runs it: the file's command
    and environment, interpolated from ``env``; ``overrides`` replace what only makes sense
    inside the containers (the database host, the volume's path)."""
    service = interpolate(services()[name], env)
    child = dict(os.environ) | service.get("environment", {}) | overrides
    child["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{child.get('PATH', '')}"
    return service["command"], child


def _tiny_dataset(directory: Path) -> Path:
    from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv

    config = SyntheticConfig(n_users=120, n_items=80, n_tags=4, mean_history=15, seed=3)
    raw, _ = generate(config)
    return write_generic_csv(raw, directory)


def _wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 120) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the backend exited with {server.returncode}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.5)
    raise AssertionError(f"the backend did not answer {url} within {seconds} s")


@pytest.mark.postgres
@pytest.mark.slow
def test_compose_commands_run_outside_docker_against_postgres(postgres_url, tmp_path) -> None:
    port = free_port()
    env = {
        "RECSAE_DB_PASSWORD": "unused-here", "RECSAE_ADMIN_PASSWORD": "compose-test-admin-pw",
        "RECSAE_RECOMMENDER": "bprmf", "RECSAE_DATA_FORMAT": "generic",
        "RECSAE_DATASET": str(_tiny_dataset(tmp_path / "tiny")), "RECSAE_DATASET_NAME": "tiny",
        "RECSAE_PORT": str(port),
    }  # fmt: skip
    here = {"RECSAE_DATABASE_URL": postgres_url, "RECSAE_DATA_DIR": str(tmp_path / "data")}

    command, child = _service("migrate", env, here)
    subprocess.run(command, env=child, cwd=REPO, check=True, timeout=300)

    command, child = _service("worker", env, here)
    subprocess.run(command, env=child, cwd=REPO, check=True, timeout=1200)

    command, child = _service("backend", env, here)
    server = subprocess.Popen(command, env=child, cwd=REPO, start_new_session=True)
    try:
        run = _wait_for(f"http://127.0.0.1:{port}/runs/tiny-bprmf.json", server)
        assert run.status_code == 200, run.text
        base = f"http://127.0.0.1:{port}/runs/tiny-bprmf"
        users = httpx.get(f"{base}/users.json?_sort=ndcg&_order=desc", timeout=30)
        assert users.status_code == 200, users.text
        user = users.json()["users"][0]["idx"]  # one with a recorded test case
        # the user page steers from the published (memory-mapped) arrays, in each process
        for _ in range(4):
            page = httpx.get(f"{base}/users/{user}.json", timeout=60)
            assert page.status_code == 200, page.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
