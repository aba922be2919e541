"""The one place that reads the environment (prefix ``RECSAE_``; a ``.env`` file works too)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSAE_", env_file=".env", extra="ignore")

    # Where runs' artifacts (weights, arrays) live: one directory per run.
    data_dir: Path = REPO_ROOT / "var"
    # SQLAlchemy URL; SQLite in data_dir by default, e.g. postgresql+psycopg://u:p@host/db.
    database_url: str | None = None

    # Any OpenAI-compatible /v1/chat/completions endpoint (issue 4).
    llm_base_url: str | None = None  # e.g. http://127.0.0.1:8080/v1
    llm_model: str = "local"
    llm_api_key: str | None = None
    llm_concurrency: int = 4
    llm_timeout_s: float = 60.0
    llm_retries: int = 3
    llm_temperature: float = 0.0
    llm_seed: int = 0
    llm_rate_limit_per_minute: int = 20  # re-explain requests from the browser

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
            if value is not None:
                env[f"RECSAE_{name.upper()}"] = str(value)
        return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
