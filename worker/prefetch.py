"""Run a batch generator one step ahead on a background thread (docs/method.md §1.2).

A recommender's training batches (sampled negatives, SASRec's dropout masks) are drawn in numpy and
torch calls that release the GIL, so a thread can draw the next batches while the main thread trains
on this one. The batches, and every random number in them, are drawn in the generator's own order,
so training is the same as with the generator run inline; only the clock changes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()  # the end-of-stream marker on the queue


class _Failure:
    """An exception raised in the producer, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` while a daemon thread draws up to ``depth`` of them ahead.

    The producer's exception is raised here, in the consumer. When the consumer stops early (an
    exception, a ``break``, the generator closed), the producer stops at its next item and is
    joined before this returns, so nothing runs on after it.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - carried to the consumer, raised there
            put(_Failure(error))

    producer = threading.Thread(target=produce, name="batch-producer", daemon=True)
    producer.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
