"""A client for any OpenAI-compatible ``/v1/chat/completions`` endpoint (llama.cpp, vLLM, OpenAI).

Why our own small client rather than the ``openai`` package: we need exactly one call, a
persistent request cache in front of it (``core.llm.cache``), deterministic retries (seeded
jitter) and errors that tell the user what to do. The async API serves the backend; the sync
wrappers (``chat``, ``run_sync``) serve the worker, which runs one event loop per batch.

Errors, all subclasses of ``LLMError``:
- ``LLMNotConfigured``: no endpoint set (``RECSAE_LLM_BASE_URL``).
- ``LLMUnreachable``: connection refused, timeouts, or 429/5xx answers that outlast the retries;
  the message names the URL.
- ``LLMBadResponse``: the endpoint answered, but not with a usable chat completion (not JSON, no
  ``choices``, 401/404...). Not retried: asking again gets the same answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from core.llm.cache import LLMCache, request_key

if TYPE_CHECKING:
    from core.settings import Settings

T = TypeVar("T")

CHAT_PATH = "/chat/completions"
# Answers worth asking again: rate limited, or the server is (momentarily) failing.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A server that cannot honour a JSON-schema response_format answers one of these: ask in text.
_FORMAT_REFUSED_STATUS = frozenset({400, 422, 501})
# Statuses whose Retry-After header we honour (RFC 9110 defines it for 429 and 503).
_RETRY_AFTER_STATUS = frozenset({429, 503})

Message = dict[str, str]


class LLMError(RuntimeError):
    """Base of every error this client raises."""


class LLMNotConfigured(LLMError):
    """No endpoint is configured."""


class LLMUnreachable(LLMError):
    """The endpoint gave no usable answer within the retries (refused, timed out, 429/5xx)."""


class LLMBadResponse(LLMError):
    """The endpoint answered with something that is not a usable chat completion."""


NOT_CONFIGURED_MESSAGE = (
    "No LLM is configured: set RECSAE_LLM_BASE_URL to an OpenAI-compatible endpoint, e.g. "
    "http://127.0.0.1:8080/v1 after starting the bundled one with `recsae llm-server` "
    "(or `python -m core.llm.server --port 8080`)"
)


@dataclass(frozen=True)
class ChatAnswer:
    text: str  # the assistant message's content, untouched
    model: str  # the model name the endpoint reported (or the one we asked for)
    cached: bool  # served from the persistent cache, no request made
    attempts: int  # HTTP attempts made (0 when cached)
    elapsed_s: float
    structured: bool = False  # asked with a JSON-schema response_format the server accepted


@dataclass
class _LoopState:
    """What must belong to one event loop: the HTTP connection pool and the semaphore."""

    http: httpx.AsyncClient
    semaphore: asyncio.Semaphore


def _retry_after_s(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class LLMClient:
    """Chat completions with a concurrency limit, retries, a cache and specific errors.

    ``concurrency`` bounds the requests in flight (per event loop); ``retries`` is the number of
    extra attempts after the first; the backoff before attempt ``a`` is
    ``min(backoff_max_s, backoff_base_s * 2**a)`` scaled by a jitter in [0.5, 1) drawn from a
    ``random.Random(seed)``, unless the server sent ``Retry-After`` (honoured up to
    ``retry_after_max_s``).
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        model: str = "local",
        api_key: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        retries: int = 3,
        temperature: float = 0.0,
        seed: int = 0,
        cache: LLMCache | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        retry_after_max_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise LLMNotConfigured(NOT_CONFIGURED_MESSAGE)
        if not base_url.startswith(("http://", "https://")):
            raise LLMNotConfigured(
                f"RECSAE_LLM_BASE_URL={base_url!r} is not an http(s) URL; "
                "expected something like http://127.0.0.1:8080/v1"
            )
        if concurrency < 1 or retries < 0 or timeout_s <= 0:
            raise ValueError(
                f"need concurrency >= 1, retries >= 0, timeout_s > 0; got {concurrency}, "
                f"{retries}, {timeout_s}"
            )
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + CHAT_PATH
        self.model = model
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.temperature = temperature
        self.seed = seed
        self.cache = cache
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._transport = transport
        self._rng = random.Random(seed)
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self.requests_made = 0  # HTTP attempts, for benchmarks
        # Set once the server refused a JSON-schema response_format: later asks are plain text.
        self.response_format_refused = False

    @classmethod
    def from_settings(cls, settings: Settings, *, use_cache: bool = True) -> LLMClient:
        """The client the worker and backend use; raises ``LLMNotConfigured`` without a URL.

        ``use_cache`` puts ``{data_dir}/llm_cache.sqlite`` in front of the endpoint.
        """
        if not settings.llm_base_url:
            raise LLMNotConfigured(NOT_CONFIGURED_MESSAGE)
        return cls(
            settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            concurrency=settings.llm_concurrency,
            timeout_s=settings.llm_timeout_s,
            retries=settings.llm_retries,
            temperature=settings.llm_temperature,
            seed=settings.llm_seed,
            cache=LLMCache.in_data_dir(settings.data_dir) if use_cache else None,
        )

    # -- per-loop resources ------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            state = _LoopState(
                http=httpx.AsyncClient(
                    timeout=httpx.Timeout(self.timeout_s),
                    headers=headers,
                    transport=self._transport,
                ),
                semaphore=asyncio.Semaphore(self.concurrency),
            )
            self._states[loop] = state
        return state

    async def aclose(self) -> None:
        """Close this event loop's connection pool (the backend calls it at shutdown)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.http.aclose()

    def run_sync(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` in a fresh event loop and close the pool after: the worker's entry."""

        async def runner() -> T:
            try:
                return await make()
            finally:
                await self.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: the usual command-line case
            return asyncio.run(runner())
        # Called from inside a running loop (a notebook, Playwright's sync API): asyncio.run
        # would refuse, so run the coroutine on a loop of its own in a helper thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, runner()).result()

    # -- the one call ---------------------------------------------------------------------------

    def _payload(
        self,
        messages: list[Message],
        max_tokens: int,
        stop: list[str] | None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": max_tokens,
            "stream": False,
        }
        if stop:
            payload["stop"] = stop
        if response_format is not None:
            payload["response_format"] = response_format
        return payload

    def _backoff_s(self, attempt: int) -> float:
        base = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return base * (0.5 + 0.5 * self._rng.random())

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise LLMBadResponse(
                f"{self.url} answered HTTP {response.status_code} with a body that is not JSON "
                f"({response.text[:200]!r}); is RECSAE_LLM_BASE_URL an OpenAI-compatible endpoint "
                "ending in /v1?"
            ) from exc
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMBadResponse(
                f"{self.url} answered JSON without choices[0].message.content: {str(data)[:300]}"
            ) from exc
        if not isinstance(content, str):
            raise LLMBadResponse(
                f"{self.url} answered a non-text message content ({type(content).__name__}): "
                f"{str(data)[:300]}"
            )
        model = data.get("model") if isinstance(data, dict) else None
        return {"text": content, "model": model if isinstance(model, str) else self.model}

    def _client_error(self, response: httpx.Response) -> LLMBadResponse:
        hint = {
            401: "check RECSAE_LLM_API_KEY",
            403: "check RECSAE_LLM_API_KEY and the key's permissions",
            404: f"check RECSAE_LLM_BASE_URL (it should end in /v1) and RECSAE_LLM_MODEL "
            f"({self.model!r})",
        }.get(response.status_code, "check RECSAE_LLM_MODEL and the endpoint's documentation")
        return LLMBadResponse(
            f"{self.url} refused the request with HTTP {response.status_code} "
            f"({response.text[:200]!r}): {hint}"
        )

    async def achat(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 64,
        stop: list[str] | None = None,
        use_cache: bool = True,
        response_format: dict[str, Any] | None = None,
    ) -> ChatAnswer:
        """One chat completion: from the cache if this exact request was answered before.

        ``response_format`` (a JSON schema, docs/method.md §1.8) is sent unless the server
        refused one before; a refusal (HTTP 400/422/501) asks again in plain text."""
        started = time.perf_counter()
        if self.response_format_refused:
            response_format = None
        structured = response_format is not None
        payload = self._payload(messages, max_tokens, stop, response_format)
        key = request_key(CHAT_PATH, payload)
        if self.cache is not None and use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                elapsed = time.perf_counter() - started
                return ChatAnswer(hit["text"], hit["model"], True, 0, elapsed, structured)

        state = self._state()
        last_problem = "no attempt made"
        refused = False
        async with state.semaphore:
            for attempt in range(self.retries + 1):
                wait: float | None = None
                self.requests_made += 1
                try:
                    response = await state.http.post(self.url, json=payload)
                except httpx.TimeoutException:
                    last_problem = f"timed out after {self.timeout_s:g} s (RECSAE_LLM_TIMEOUT_S)"
                except httpx.TransportError as exc:
                    last_problem = f"connection failed ({type(exc).__name__}: {exc})"
                else:
                    if response.status_code in _RETRY_STATUS:
                        last_problem = f"HTTP {response.status_code} ({response.text[:200]!r})"
                        if response.status_code in _RETRY_AFTER_STATUS:
                            wait = _retry_after_s(response)
                    elif structured and response.status_code in _FORMAT_REFUSED_STATUS:
                        refused = True
                        break
                    elif response.status_code >= 400:
                        raise self._client_error(response)
                    else:
                        parsed = self._parse(response)
                        if self.cache is not None:
                            self.cache.put(key, payload, parsed)
                        return ChatAnswer(
                            parsed["text"],
                            parsed["model"],
                            False,
                            attempt + 1,
                            time.perf_counter() - started,
                            structured,
                        )
                if attempt < self.retries:
                    delay = self._backoff_s(attempt) if wait is None else wait
                    await asyncio.sleep(min(delay, self.retry_after_max_s))
        if refused:  # outside the semaphore: the plain ask takes it again
            self.response_format_refused = True
            return await self.achat(messages, max_tokens=max_tokens, stop=stop, use_cache=use_cache)
        raise LLMUnreachable(
            f"The LLM endpoint {self.url} gave no answer after {self.retries + 1} attempt(s): "
            f"{last_problem}. Is the server running? Start the bundled one with "
            "`recsae llm-server`, or point RECSAE_LLM_BASE_URL at a reachable endpoint."
        )

    def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 64,
        stop: list[str] | None = None,
        use_cache: bool = True,
        response_format: dict[str, Any] | None = None,
    ) -> ChatAnswer:
        """Synchronous ``achat`` for scripts and the worker (see ``run_sync``)."""
        return self.run_sync(
            lambda: self.achat(
                messages,
                max_tokens=max_tokens,
                stop=stop,
                use_cache=use_cache,
                response_format=response_format,
            )
        )
