"""What one explanation is doing, for the explorer's live view.

The LLM steps call a :data:`Progress` with ``(stage, done, total)`` as they go; the explorer
turns it into the words the page shows. Stages, in order: ``explain`` (asking for a description
from ``total`` construction cases), ``relabel`` (the label was degenerate: asking once more,
docs/method.md §1.8), ``verify`` (``done`` of ``total`` verification and random cases answered),
``null`` (``done`` of ``total`` other latents' labels scored on the same cases, §1.11).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]

EXPLAIN, RELABEL, VERIFY, NULL = "explain", "relabel", "verify", "null"


def ignore(stage: str, done: int, total: int) -> None:
    """The progress of a caller that does not watch (the worker: it has its own bars)."""
