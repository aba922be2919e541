"""Talking to an LLM: an OpenAI-compatible client with a persistent cache, the paper's prompts,
and a bundled local server. No torch here: the backend imports this package."""

from core.llm.cache import LLMCache
from core.llm.client import (
    ChatAnswer,
    LLMBadResponse,
    LLMClient,
    LLMError,
    LLMNotConfigured,
    LLMUnreachable,
)

__all__ = [
    "ChatAnswer",
    "LLMBadResponse",
    "LLMCache",
    "LLMClient",
    "LLMError",
    "LLMNotConfigured",
    "LLMUnreachable",
]
