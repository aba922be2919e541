"""LLMClient against a scripted OpenAI-compatible server on loopback: retries, Retry-After,
timeouts, garbage, refused connections, concurrency and the persistent cache.

``ScriptedLLM`` is reused by the concept and backend tests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.llm.cache import LLMCache
from core.llm.client import (
    LLMBadResponse,
    LLMClient,
    LLMNotConfigured,
    LLMUnreachable,
)
from core.settings import Settings


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_reply(text: str, model: str = "scripted-model") -> Reply:
    return Reply(
        body={"model": model, "choices": [{"message": {"role": "assistant", "content": text}}]}
    )


Responder = Callable[[dict[str, Any]], Reply]


class ScriptedLLM:
    """A loopback HTTP server answering ``POST /v1/chat/completions`` from a script.

    ``script`` is either a list of replies consumed in order (an exhausted script answers 500 so
    a test that asks too often fails) or a function of the request payload.
    """

    def __init__(self, script: list[Reply] | Responder) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                payload = json.loads(raw)
                reply = outer._next(self.path, payload, dict(self.headers))
                with outer._lock:
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                counted = True
                try:
                    time.sleep(reply.delay_s)
                    # No longer in flight once answered: counted down before the client can read
                    # the answer and send its next request (on a new connection, a new thread).
                    with outer._lock:
                        outer.in_flight -= 1
                    counted = False
                    body = reply.body
                    if isinstance(body, dict | list):
                        data = json.dumps(body).encode()
                    elif isinstance(body, str):
                        data = body.encode()
                    else:
                        data = body or b""
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    if counted:
                        with outer._lock:
                            outer.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _next(self, path: str, payload: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(payload)
            self.headers.append(headers)
            self.times.append(time.monotonic())
            if path != "/v1/chat/completions":
                return Reply(404, {"error": f"no route {path}"})
            if callable(self.script):
                return self.script(payload)
            if not self.script:
                return Reply(500, {"error": "script exhausted"})
            return self.script.pop(0)

    def __enter__(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Reply] | Responder], ScriptedLLM]]:
    servers: list[ScriptedLLM] = []

    def make(script: list[Reply] | Responder) -> ScriptedLLM:
        server = ScriptedLLM(script).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def fast_client(base_url: str, **kwargs: Any) -> LLMClient:
    return LLMClient(base_url, **{"backoff_base_s": 0.01, "timeout_s": 5.0, **kwargs})


MESSAGES = [{"role": "user", "content": "Say 7"}]


def test_success_sends_deterministic_request_and_bearer(scripted: Callable) -> None:
    server = scripted([chat_reply("7")])
    client = fast_client(server.base_url, api_key="sk-test", model="m1", seed=3)
    answer = client.chat(MESSAGES, max_tokens=5)
    assert (answer.text, answer.model, answer.cached, answer.attempts) == (
        "7",
        "scripted-model",
        False,
        1,
    )
    payload = server.requests[0]
    assert payload["model"] == "m1" and payload["messages"] == MESSAGES
    assert payload["temperature"] == 0.0 and payload["seed"] == 3 and payload["max_tokens"] == 5
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_http_500_then_success_is_retried(scripted: Callable) -> None:
    server = scripted([Reply(500, {"error": "boom"}), chat_reply("ok")])
    answer = fast_client(server.base_url, retries=2).chat(MESSAGES)
    assert answer.text == "ok" and answer.attempts == 2 and len(server.requests) == 2


def test_persistent_5xx_is_unreachable_with_url(scripted: Callable) -> None:
    server = scripted([Reply(503, "down")] * 3)
    with pytest.raises(LLMUnreachable, match="HTTP 503") as info:
        fast_client(server.base_url, retries=2).chat(MESSAGES)
    assert server.base_url in str(info.value) and len(server.requests) == 3


def test_429_retry_after_is_honoured(scripted: Callable) -> None:
    server = scripted(
        [Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}), chat_reply("fine")]
    )
    answer = fast_client(server.base_url, retries=1).chat(MESSAGES)
    assert answer.text == "fine"
    gap = server.times[1] - server.times[0]
    assert gap >= 0.95, f"retried after {gap:.2f}s despite Retry-After: 1"


def test_garbage_json_is_bad_response_not_retried(scripted: Callable) -> None:
    server = scripted([Reply(200, "<html>not json</html>")] * 4)
    with pytest.raises(LLMBadResponse, match="not JSON"):
        fast_client(server.base_url, retries=3).chat(MESSAGES)
    assert len(server.requests) == 1


def test_json_without_choices_is_bad_response(scripted: Callable) -> None:
    server = scripted([Reply(200, {"object": "error", "message": "?"})])
    with pytest.raises(LLMBadResponse, match=r"choices\[0\]"):
        fast_client(server.base_url).chat(MESSAGES)


def test_401_names_the_api_key_setting(scripted: Callable) -> None:
    server = scripted([Reply(401, {"error": "bad key"})] * 3)
    with pytest.raises(LLMBadResponse, match="RECSAE_LLM_API_KEY"):
        fast_client(server.base_url, retries=2).chat(MESSAGES)
    assert len(server.requests) == 1


def test_timeout_after_retries_is_unreachable(scripted: Callable) -> None:
    server = scripted(lambda payload: Reply(delay_s=1.0, body=chat_reply("late").body))
    with pytest.raises(LLMUnreachable, match="timed out") as info:
        fast_client(server.base_url, timeout_s=0.2, retries=1).chat(MESSAGES)
    assert server.base_url in str(info.value)
    assert len(server.requests) == 2


def test_slow_answer_within_timeout_succeeds(scripted: Callable) -> None:
    server = scripted([Reply(delay_s=0.3, body=chat_reply("slow").body)])
    answer = fast_client(server.base_url, timeout_s=3.0).chat(MESSAGES)
    assert answer.text == "slow" and answer.elapsed_s >= 0.3


def test_connection_refused_is_unreachable_with_url() -> None:
    url = closed_port_url()
    with pytest.raises(LLMUnreachable, match="connection failed") as info:
        fast_client(url, retries=1).chat(MESSAGES)
    assert url in str(info.value) and "recsae llm-server" in str(info.value)


def test_not_configured() -> None:
    with pytest.raises(LLMNotConfigured, match="RECSAE_LLM_BASE_URL"):
        LLMClient.from_settings(Settings(llm_base_url=None))
    with pytest.raises(LLMNotConfigured, match="not an http"):
        LLMClient("localhost:8080/v1")


def test_concurrency_is_bounded(scripted: Callable) -> None:
    server = scripted(lambda payload: Reply(delay_s=0.15, body=chat_reply("x").body))
    client = fast_client(server.base_url, concurrency=2)

    async def many() -> list[str]:
        import asyncio

        answers = await asyncio.gather(
            *(client.achat([{"role": "user", "content": str(i)}]) for i in range(6))
        )
        return [a.text for a in answers]

    assert client.run_sync(many) == ["x"] * 6
    assert server.max_in_flight == 2


def test_cache_hit_on_repeat_and_persistence(scripted: Callable, tmp_path: Path) -> None:
    server = scripted(lambda payload: chat_reply(f"n={len(payload['messages'])}"))
    cache = LLMCache(tmp_path / "llm_cache.sqlite")
    client = fast_client(server.base_url, cache=cache)
    first = client.chat(MESSAGES, max_tokens=8)
    again = client.chat(MESSAGES, max_tokens=8)
    assert not first.cached and again.cached and again.text == first.text
    assert len(server.requests) == 1 and (cache.stats.hits, cache.stats.misses) == (1, 1)
    client.chat(MESSAGES, max_tokens=9)  # any change to the request is a miss
    assert len(server.requests) == 2
    reopened = fast_client(server.base_url, cache=LLMCache(tmp_path / "llm_cache.sqlite"))
    assert reopened.chat(MESSAGES, max_tokens=8).cached and len(server.requests) == 2


def test_backoff_jitter_is_seeded() -> None:
    a = [LLMClient("http://x/v1", seed=5)._backoff_s(i) for i in range(4)]
    b = [LLMClient("http://x/v1", seed=5)._backoff_s(i) for i in range(4)]
    assert a == b and 0.25 <= a[0] < 0.5 and a[3] > a[0]
