"""benchmarks/annotate.py must see what a broken store does: run against a store that
acknowledges writes it never makes, its counts must match what that store dropped (worked out
here from the store's own log), and against the real store they must all be 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from benchmarks import annotate
from core import studies
from core.net import free_port
from core.settings import Settings

# Two annotators, 50 items rated twice each: 100 writes per annotator, so a store that drops
# every 50th write of an annotator drops its 50th and its last (100th) write.
TINY = ["--engines", "sqlite", "--annotators", "2", "--ratings", "50", "--rounds", "2",
        "--latents", "150", "--workers", "1"]  # fmt: skip
Key = tuple[int, int]


@contextmanager
def in_process_server(settings: Settings, workers: int, **_: Any) -> Iterator[str]:
    """The app served by uvicorn in a thread of this process (so a monkeypatched store is the
    one it writes through); stands in for benchmarks/common.py's ``server``."""
    import uvicorn

    from backend.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class BrokenStore:
    """Wraps core.studies' rating write; ``drop(key, n_write, n_key)`` says whether to skip a
    write (answer as if written: the client gets its 200). Logs every write, in order."""

    def __init__(self, drop: Callable[[Key, int, int], bool]) -> None:
        self.drop = drop
        self.real = studies._write
        self.lock = threading.Lock()
        self.writes: dict[int, int] = {}  # account -> writes seen
        self.keys: dict[int, list[int]] = {}  # account -> positions in the order first seen
        self.log: dict[Key, list[tuple[int, bool]]] = {}  # key -> (value, dropped) in order

    def __call__(self, conn: Any, at: dict[str, int], value: int | None, reason: Any) -> tuple:
        account, position = at["account_id"], at["position"]
        key = (account, position)
        with self.lock:
            self.writes[account] = n_write = self.writes.get(account, 0) + 1
            seen = self.keys.setdefault(account, [])
            if position not in seen:
                seen.append(position)
            dropped = self.drop(key, n_write, seen.index(position) + 1)
            self.log.setdefault(key, []).append((int(value or 0), dropped))
        if dropped:
            return studies.RateResult(0, False, True), True
        return self.real(conn, at, value, reason)

    def expected(self) -> dict[str, int]:
        """lost and wrong_final as the store's log implies them: a key none of whose writes was
        kept is lost; one whose last kept value is not its last acknowledged value is wrong."""
        lost = wrong = 0
        for writes in self.log.values():
            kept = [v for v, dropped in writes if not dropped]
            lost += not kept
            wrong += bool(kept) and kept[-1] != writes[-1][0]
        return {"lost": lost, "wrong_final": wrong}

    @property
    def n_dropped(self) -> int:
        return sum(d for writes in self.log.values() for _, d in writes)


def run(
    monkeypatch: pytest.MonkeyPatch, store: BrokenStore | None, argv: list[str] = TINY
) -> dict[str, Any]:
    monkeypatch.setattr(annotate, "server", in_process_server)
    if store is not None:
        monkeypatch.setattr(studies, "_write", store)
    out = annotate.main(argv)
    return dict(out["engines"]["sqlite"])


def test_sound_store_keeps_every_acknowledged_write(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [*TINY, "--annotators", "3", "--ratings", "10", "--rounds", "3"]  # later ones win
    r = run(monkeypatch, None, argv)
    assert set(r) == set(annotate.LAST_LINE)
    assert r["acknowledged"] == 3 * 10 * 3 and r["resubmits"] == 3 * 10 * 2  # all answered
    assert {k: r[k] for k in annotate.CHECKS} == dict.fromkeys(annotate.CHECKS, 0)
    assert r["stored"] == 3 * 10 and r["errors"] == r["in_doubt"] == 0


def test_dropping_every_50th_write_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    store = BrokenStore(lambda key, n_write, n_key: n_write % 50 == 0)
    r = run(monkeypatch, store)
    expected = store.expected()
    assert store.n_dropped == 4 and expected["wrong_final"] >= 2  # each annotator's last write
    assert r["acknowledged"] == 200  # the broken store still answered 200 every time
    assert {k: r[k] for k in ("lost", "wrong_final")} == expected
    assert r["history_lost"] >= store.n_dropped  # every dropped change is missing from history
    assert r["duplicated"] == r["history_extra"] == r["phantom"] == 0


def test_losing_every_50th_key_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    store = BrokenStore(lambda key, n_write, n_key: n_key % 50 == 0)
    r = run(monkeypatch, store)
    assert store.expected() == {"lost": 2, "wrong_final": 0}  # each annotator's 50th item
    assert r["lost"] == 2 and r["wrong_final"] == 0
    assert r["stored"] == 2 * 49 and r["history_lost"] == store.n_dropped == 4


def test_tally_by_hand() -> None:
    """Duplicates, phantoms and extra history cannot be made through the store (its unique key
    refuses them): hand-made rows, hand-counted."""
    a, b, c, d = (1, 0), (1, 1), (2, 0), (2, 1)
    acked = {a: [1, 3, 2], b: [4, 1], c: [2, 3], d: [3]}
    stored = [(a, 2), (b, 1), (b, 1), (c, 2), ((3, 0), 4)]  # d missing, c stale, b twice, phantom
    history = {a: [1, 3, 2], b: [4, 1, 1], c: [2, 4]}
    assert annotate.tally(acked, set(), stored, history) == {
        "stored": 5, "duplicated": 1, "lost": 1, "wrong_final": 1, "phantom": 1,
        # c: 3 missing; d: 3 missing
        "history_lost": 2,
        # b: one 1 too many; c: 4 never acknowledged
        "history_extra": 2,
        "in_doubt": 0,
    }  # fmt: skip
    # A key in doubt is not checked, and a stored key in doubt is no phantom.
    assert annotate.tally(acked, {d, (3, 0)}, stored, history)["lost"] == 0
    assert annotate.tally(acked, {d, (3, 0)}, stored, history)["phantom"] == 0


def test_rounds_must_rerate() -> None:
    with pytest.raises(SystemExit):
        annotate.parse_args(["--rounds", "1"])


def test_a_limiter_refusal_is_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 7th rating POST is refused by the admission limiter's own answer (503, Retry-After,
    "Nothing was done"): each is a ``rejected_503``, none an error or a key in doubt, and the
    writes that went through are all checked (the reference: the refusals the server sent)."""
    from backend import limits

    real = limits.Admission.__call__
    sent = {"posts": 0, "refused": 0}
    warmed: set[bytes] = set()  # the annotators (session cookies) whose warm-up post came

    async def every_7th(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/ratings")
        ):
            # Each annotator's first post is its warm-up, whose answer it does not count: it
            # passes, whenever it comes (one annotator may be 14 posts in before the other's).
            annotator = dict(scope["headers"]).get(b"cookie", b"")
            if annotator not in warmed:
                warmed.add(annotator)
            else:
                sent["posts"] += 1
                if sent["posts"] % 7 == 0:
                    sent["refused"] += 1
                    await self._refuse(send, limits.LIGHT, False)
                    return
        await real(self, scope, receive, send)

    monkeypatch.setattr(limits.Admission, "__call__", every_7th)
    argv = [*TINY, "--annotators", "2", "--ratings", "10", "--rounds", "3"]
    r = run(monkeypatch, None, argv)
    assert len(warmed) == 2 and sent["posts"] == 2 * 10 * 3 and sent["refused"] > 0
    assert r["rejected_503"] == sent["refused"]
    assert r["errors"] == r["in_doubt"] == 0
    assert r["acknowledged"] == 2 * 10 * 3 - sent["refused"]
    assert {k: r[k] for k in annotate.CHECKS} == dict.fromkeys(annotate.CHECKS, 0)
