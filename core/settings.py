"""The one place that reads the environment (prefix ``RECSAE_``; a ``.env`` file works too)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSAE_", env_file=".env", extra="ignore")

    # Where runs' artifacts (weights, arrays) live: one directory per run.
    data_dir: Path = REPO_ROOT / "var"
    # SQLAlchemy URL; SQLite in data_dir by default, e.g. postgresql+psycopg://u:p@host/db.
    database_url: str | None = None

    # Any OpenAI-compatible /v1/chat/completions endpoint.
    llm_base_url: str | None = None  # e.g. http://127.0.0.1:8080/v1
    llm_model: str = "local"
    llm_api_key: str | None = None
    llm_concurrency: int = 4
    llm_timeout_s: float = 60.0
    llm_retries: int = 3
    llm_temperature: float = 0.0
    llm_seed: int = 0
    llm_rate_limit_per_minute: int = 20  # re-explain requests from the browser
    # The LLM under control: how long an explain request waits for an admission slot before a
    # 503 (backend/limits.py), and explanations per signed-in account per hour (0: none),
    # counted with its queued jobs. How many run at once is how many job workers run.
    llm_explain_queue_wait_s: float = 5.0
    llm_explains_per_hour: int = 30
    # Durable explanation jobs (docs/jobs.md): one job's time budget in minutes (explain +
    # verify + null), how often a worker beats its heart and writes its stage, after how long
    # without a heartbeat a running job counts as its worker's death and is queued again, how
    # many claims a job gets before it fails, and how often an idle worker looks for work.
    job_budget_min: float = 20.0
    job_heartbeat_s: float = 2.0
    job_stale_s: float = 30.0
    job_max_attempts: int = 3
    job_poll_s: float = 1.0

    # torch threads of the worker's training (RECSAE_THREADS): 0 picks them at every
    # epoch from the cores other processes leave free (worker/threads.py), N > 0 fixes N.
    threads: int = 0
    # torch device of the worker's training (RECSAE_DEVICE, `recsae run --device`): cpu, cuda,
    # cuda:N or mps (worker/device.py; docs/scaling.md).
    device: str = "cpu"

    # The largest request body accepted, in bytes (0: no limit).
    max_body_bytes: int = 64 * 1024

    # Bounded concurrency per server process (docs/scaling.md, "Admission"): requests running at
    # once per route class (light: pages, JSON, per-user steering; heavy: segment steering;
    # explain: LLM explanations). A request that finds no slot within admission_wait_s, or no
    # database connection within db_pool_timeout_s, answers 503 with Retry-After instead of
    # queueing. The database pool and the thread pool are sized from the caps together.
    concurrency_light: int = 16
    concurrency_heavy: int = 2
    concurrency_explain: int = 4
    admission_wait_s: float = 0.5
    db_pool_timeout_s: float = 1.0

    # Accounts and security (README "Accounts and security").
    session_ttl_hours: float = 12.0  # a login session ends this long after sign-in
    # Host headers answered (DNS rebinding); comma-separated in the environment.
    allowed_hosts: Annotated[list[str], NoDecode] = ["localhost", "127.0.0.1", "[::1]"]
    require_login_to_read: bool = False  # True: every page but /login needs a signed-in account
    read_only: bool = False  # True: every mutating route answers 403
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated IPs or CIDRs); unset:
    # a client's address is the socket peer.
    trusted_proxies: str | None = None
    cookie_secure: bool = False  # True when served over HTTPS: cookies only sent over HTTPS

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'recsae.db').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def as_environment(self) -> dict[str, str]:
        """These settings as the ``RECSAE_*`` variables that reproduce them in a child process."""
        env = {"RECSAE_DATABASE_URL": self.resolved_database_url}
        for name, value in self.model_dump(exclude={"database_url"}).items():
            if isinstance(value, list):
                env[f"RECSAE_{name.upper()}"] = ",".join(map(str, value))
            elif value is not None:
                env[f"RECSAE_{name.upper()}"] = str(value)
        return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
