"""A persistent cache of LLM answers, keyed by a hash of the full request.

Why: interpreting a thousand latents is thousands of chat requests. At temperature 0 with a fixed
seed the answer is a function of the request, so storing it makes a rerun free and lets a stopped
run resume where it stopped (every answer is committed as soon as it arrives). The key covers
everything that can change the answer (URL path, model, messages, temperature, seed, max_tokens,
stop, ...): change any of them and the request misses, never returns a stale answer.

The host of the endpoint is deliberately *not* part of the key: the same model served on another
port (a restarted local server) answers the same. Give different models different names.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def request_key(path: str, payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (path, payload): identical requests, identical keys."""
    canonical = json.dumps(
        {"path": path, "payload": payload},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


class LLMCache:
    """SQLite-backed ``key -> response JSON``; safe across threads and across processes (WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(
                f"LLM cache {self.path} cannot be opened ({exc}); delete the file to start afresh"
            ) from exc

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> LLMCache:
        """The cache every worker run and the backend share: ``{data_dir}/llm_cache.sqlite``."""
        return cls(Path(data_dir) / "llm_cache.sqlite")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for ``key`` (counted as a hit), or None (counted as a miss)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT response FROM llm_cache WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                self.stats.misses += 1
                return None
            self.stats.hits += 1
        response: dict[str, Any] = json.loads(row[0])
        return response

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Store (or overwrite) one answer and commit at once, so a killed run keeps it."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_cache (key, request, response, created_at) "
                "VALUES (?, ?, ?, ?)",
                (key, json.dumps(request, ensure_ascii=False), json.dumps(response), time.time()),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute("SELECT COUNT(*) FROM llm_cache").fetchone()
        return int(count)

    def reset_stats(self) -> None:
        self.stats = CacheStats()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
