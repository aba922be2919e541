"""Errors a user causes and can fix by changing the command line or the run's config.

The CLI prints these as one line (``worker.cli``); anything else is a bug and shows its
traceback. ``DataFormatError`` (bad input files) and ``core.llm.client.LLMError`` (no or a failing
LLM) are the other two user-fixable kinds.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """The run asks for something that does not exist: a recommender, a config field, a value."""

    def __str__(self) -> str:
        # KeyError subclasses would print their message quoted; a user should read it plainly.
        return str(self.args[0]) if self.args else ""


class UnknownRecommender(ConfigError, KeyError):
    """No recommender is registered under the asked name (a ``KeyError`` of the registry too)."""
