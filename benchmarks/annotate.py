"""Annotation under load (issue 10): annotators re-rate the same items with changing values, all
at once, against uvicorn with two workers, over SQLite and over PostgreSQL; afterwards the
database must hold every key's last acknowledged value, once.

    .venv/bin/python benchmarks/annotate.py                   # both engines
    .venv/bin/python benchmarks/annotate.py --engines sqlite --annotators 5 --rounds 2
    .venv/bin/python benchmarks/annotate.py --parts    # one client: ms per part of a rating POST

Per engine, a throw-away database (PostgreSQL: a server started for the run, the helpers of
benchmarks/load.py) holds the factory run (tests/backend/factories.py) with ``--latents``
latents, one study of every latent with a concept of confidence >= 0.8, ``--annotators``
accounts assigned to it and a signed-in session each. ``python -m backend.serve --workers 2``
serves it on loopback (benchmarks/load.py's ``server``). Then one thread per annotator, each
with its own connection, posts its ratings as the annotation page's form does (the session
cookie, the CSRF token, ``Accept: application/json``), one after another, as fast as the
server answers. Every annotator rates the same ``--ratings`` items ``--rounds`` times each, the
rounds shuffled together, every write of an item with another value than the one before it: so
all annotators write the same study items at once, and each of their keys is changed again and
again while the others write.

What is checked. A rating's key is (study, annotator, item): each key has one writer, its
annotator's client, which waits for each answer before the next request, so the order in which
the server acknowledged a key's writes (HTTP 2xx) is the order the client sent them, and the
key's *last acknowledged value* is well defined. After the clients stop, the database is read
back (the ratings and their change history, ``rating_changes``):

- ``lost``: acknowledged keys with no rating row;
- ``wrong_final``: keys whose row holds another value than the last acknowledged one;
- ``duplicated``: rating rows beyond one per key;
- ``history_lost`` / ``history_extra``: acknowledged changes missing from a key's change history
  / changes in it that no client had acknowledged (a dropped intermediate write is only visible
  there);
- ``phantom``: keys stored that no client had acknowledged;
- ``in_doubt``: keys excluded from the checks because a write of theirs got no answer (a
  transport error) or a 5xx: it may or may not have committed. Counted in ``errors`` too.

``acknowledged`` counts 2xx answers, ``resubmits`` those of them that changed a key its client
had had acknowledged before (the re-ratings). A 4xx answer is a refusal (nothing written).
The admission limiter's 503 (Retry-After, "Nothing was done"; docs/scaling.md "Admission") is
counted apart as ``rejected_503``, not as an error: nothing was written. The default
``--annotators`` (16) stays below it: at most as many requests at once as one worker admits.

Prints a table, one JSON line with the details, and as the LAST line::

    {"engines": {"sqlite": {"acknowledged", "resubmits", "lost", "duplicated", "wrong_final",
                            "history_lost", "history_extra", "phantom", "in_doubt", "errors",
                            "rejected_503", "stored", "p50_ms", "p99_ms"},
                 "postgres": {...}}}

Targets: lost = duplicated = wrong_final = history_lost = history_extra = phantom = 0, with
resubmits > 0; errors = 0; rejected_503 = 0 at the default annotators; p99_ms < 200.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import database, percentile, server  # noqa: E402
from core.settings import Settings  # noqa: E402

RUN_ID = "annotate"
PASSWORD = "benchmark password"
VALUES = (1, 2, 3, 4)  # the rating scale (core.studies)

Key = tuple[int, int]  # (account id, study position): one key per annotator and item


def build(url: str, args: argparse.Namespace) -> tuple[int, int, list[dict[str, Any]]]:
    """The run, the study and one signed-in annotator each: (study id, items, sessions)."""
    from core import accounts, studies, study_reads
    from core.store import migrate
    from core.store.engine import session_factory
    from tests.backend.factories import publish_fixture

    migrate.upgrade(url)
    sessions = session_factory(url)
    publish_fixture(sessions, run_id=RUN_ID, n_latents=args.latents, n_items=40, n_users=20)
    study_id = studies.create_study(sessions, RUN_ID, "load", size=args.latents)
    with sessions() as session:
        n_items = len(study_reads.items(session, study_id))
    if n_items < args.ratings:
        raise SystemExit(f"the study has {n_items} items, fewer than --ratings {args.ratings}")
    people = []
    for k in range(args.annotators):
        account = accounts.create_account(sessions, f"rater{k:02d}", PASSWORD, "annotator")
        token, login = accounts.start_session(sessions, account.id, timedelta(hours=2))
        people.append({"id": account.id, "token": token, "csrf": login.csrf_token})
    studies.assign(sessions, study_id, [f"rater{k:02d}" for k in range(args.annotators)])
    return study_id, n_items, people


def plan(rng: random.Random, n_positions: int, rounds: int) -> list[tuple[int, int]]:
    """One annotator's writes, in order: (position, value). Each of the ``n_positions`` items
    ``rounds`` times, the rounds shuffled together; each write's value differs from the value
    of the write of that item before it."""
    writes = [p for p in range(n_positions) for _ in range(rounds)]
    rng.shuffle(writes)
    last: dict[int, int] = {}
    out = []
    for position in writes:
        value = rng.choice([v for v in VALUES if v != last.get(position)])
        last[position] = value
        out.append((position, value))
    return out


def limiter_refusal(status: int, headers: Mapping[str, str], body: str) -> bool:
    """Whether an answer is the admission limiter's 503 (Retry-After, "The server is busy ...
    Nothing was done", backend/limits.py): a refusal before the route ran, so no write. Any
    other 5xx is an error and leaves its key in doubt."""
    return status == 503 and "retry-after" in headers and "Nothing was done" in body


def annotate(
    base: str, study_id: int, person: dict[str, Any], args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """One annotator's submissions: latencies (ms), the values acknowledged for each position in
    the order the server acknowledged them, the positions in doubt, the errors."""
    import httpx

    writes = plan(random.Random(seed), args.ratings, args.rounds)
    headers = {"X-CSRF-Token": person["csrf"], "Accept": "application/json", "Origin": base}
    acked: dict[int, list[int]] = {}
    doubt: set[int] = set()
    latencies: list[float] = []
    errors: list[str] = []
    refused = rejected = 0
    with httpx.Client(
        base_url=base, headers=headers, cookies={"recsae_session": person["token"]}, timeout=60
    ) as client:
        # Before the clock: this connection's worker renders the page and parses a (refused) form.
        client.get(f"/studies/{study_id}/annotate.json").raise_for_status()
        client.post(f"/studies/{study_id}/ratings", data={"position": "0", "value": "9"})
        for position, value in writes:
            started = time.perf_counter()
            try:
                r = client.post(
                    f"/studies/{study_id}/ratings",
                    data={"position": str(position), "value": str(value)},
                )
            except httpx.TransportError as exc:  # no answer: it may have committed or not
                doubt.add(position)
                errors.append(f"{type(exc).__name__}: {exc} (rating {position})")
                continue
            finally:
                latencies.append(1000 * (time.perf_counter() - started))
            if r.is_success:
                acked.setdefault(position, []).append(value)
            elif limiter_refusal(r.status_code, r.headers, r.text):
                rejected += 1  # refused before the route ran: nothing was written
            elif r.status_code >= 500:  # the server failed; whether it wrote is unknown
                doubt.add(position)
                errors.append(f"{r.status_code}: {r.text[:200]}")
            else:  # a refusal: the write's transaction rolled back
                refused += 1
                errors.append(f"{r.status_code}: {r.text[:200]}")
    return {
        "latencies": latencies,
        "acked": acked,
        "doubt": doubt,
        "refused": refused,
        "rejected_503": rejected,
        "errors": errors,
    }


def _common_subsequence(a: list[Any], b: list[Any]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (short lists: one per key)."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b):
            diagonal, row[j + 1] = row[j + 1], diagonal + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def _changes(values: list[int]) -> list[int]:
    """The changes a run of acknowledged values makes: a value equal to the one before is none."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def tally(
    acked: Mapping[Key, list[int]],
    doubt: set[Key],
    stored: list[tuple[Key, int | None]],
    history: Mapping[Key, list[int | None]],
) -> dict[str, int]:
    """Compare the clients' acknowledged writes with what the database holds.

    ``acked``: per key the values acknowledged, in order; ``doubt``: keys left out (a write
    without an answer); ``stored``: every rating row, (key, value); ``history``: per key the new
    values of its change rows in the order they were written."""
    rows: dict[Key, list[int | None]] = {}
    for key, value in stored:
        rows.setdefault(key, []).append(value)
    out = {
        "stored": len(stored),
        "duplicated": sum(len(v) - 1 for v in rows.values()),
        "lost": 0,
        "wrong_final": 0,
        "history_lost": 0,
        "history_extra": 0,
        "phantom": sum(1 for key in rows if key not in acked and key not in doubt),
        "in_doubt": len(doubt),
    }
    for key, values in acked.items():
        if key in doubt:
            continue
        if key not in rows:
            out["lost"] += 1
        elif any(v != values[-1] for v in rows[key]):
            out["wrong_final"] += 1
        expected, logged = _changes(values), history.get(key, [])
        common = _common_subsequence(expected, logged)
        out["history_lost"] += len(expected) - common
        out["history_extra"] += len(logged) - common
    return out


def read_back(url: str, study_id: int) -> tuple[list[tuple[Key, int | None]], dict[Key, list]]:
    """The study's rating rows as (key, value) and each key's change history (new values, in
    the order written)."""
    from sqlalchemy import select

    from core.store.engine import session_factory
    from core.store.schema import Rating, RatingChange, StudyItem

    with session_factory(url)() as session:
        position_of = {
            (i.latent_idx, i.concept_id): i.position
            for i in session.scalars(select(StudyItem).filter_by(study_id=study_id))
        }
        ratings = session.execute(
            select(
                Rating.id, Rating.account_id, Rating.latent_idx, Rating.concept_id, Rating.value
            ).filter_by(study_id=study_id)
        ).all()
        key_of = {r[0]: (r[1], position_of[(r[2], r[3])]) for r in ratings}
        changes = session.execute(
            select(RatingChange.rating_id, RatingChange.new_value)
            .where(RatingChange.rating_id.in_(list(key_of)))
            .order_by(RatingChange.id)
        ).all()
    history: dict[Key, list[int | None]] = {}
    for rating_id, new_value in changes:
        history.setdefault(key_of[rating_id], []).append(new_value)
    return [(key_of[r[0]], r[4]) for r in ratings], history


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:

    with tempfile.TemporaryDirectory(prefix=f"annotate-{engine}-") as tmp:
        data_dir = Path(tmp)
        with database(engine, data_dir) as url:
            study_id, n_items, people = build(url, args)
            settings = Settings(data_dir=data_dir, database_url=url)
            with server(settings, args.workers, repo=args.server_repo) as base:
                start = threading.Barrier(len(people))

                def one(k: int) -> dict[str, Any]:
                    start.wait()
                    return annotate(base, study_id, people[k], args, args.seed + k)

                began = time.perf_counter()
                with ThreadPoolExecutor(len(people)) as pool:
                    results = list(pool.map(one, range(len(people))))
                wall = time.perf_counter() - began
            stored, history = read_back(url, study_id)
    acked = {
        (person["id"], position): values
        for person, res in zip(people, results, strict=True)
        for position, values in res["acked"].items()
    }
    doubt = {
        (person["id"], position)
        for person, res in zip(people, results, strict=True)
        for position in res["doubt"]
    }
    latencies = [ms for r in results for ms in r["latencies"]]
    errors = [e for r in results for e in r["errors"]]
    return {
        "acknowledged": sum(len(v) for v in acked.values()),
        "resubmits": sum(len(v) - 1 for v in acked.values()),
        "keys": len(acked),
        **tally(acked, doubt, stored, history),
        "refused": sum(r["refused"] for r in results),
        "rejected_503": sum(r["rejected_503"] for r in results),
        "errors": len(errors),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "requests": len(latencies),
        "first_errors": errors[:5],
        "wall_s": round(wall, 2),
        "items": n_items,
    }


def parts(engine: str, args: argparse.Namespace, repeat: int = 300) -> dict[str, float]:
    """One client, in this process: the median ms of each part of a rating POST: the session
    lookup (every signed-in request), the rating write (a new rating; a change), and the whole
    POST through the app (Starlette's TestClient: no network, one process)."""
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from core import accounts, studies
    from core.store.engine import session_factory

    def median_ms(fn: Any, times: int = repeat) -> float:
        taken = []
        for i in range(times):
            started = time.perf_counter()
            fn(i)
            taken.append(1000 * (time.perf_counter() - started))
        return round(sorted(taken)[len(taken) // 2], 2)

    one = argparse.Namespace(**{**vars(args), "annotators": 1})
    with tempfile.TemporaryDirectory(prefix=f"annotate-{engine}-") as tmp:
        with database(engine, Path(tmp)) as url:
            study_id, n_items, (person,) = build(url, one)
            sessions, who, token = session_factory(url), person["id"], person["token"]

            def rate(i: int, value: int) -> None:
                studies.rate_at(sessions, study_id, who, i % n_items, value)

            out = {
                "session_lookup": median_ms(lambda i: accounts.lookup_session(sessions, token)),
                "rate_new": median_ms(lambda i: rate(i, 1), n_items),  # each item once
                "rate_change": median_ms(lambda i: rate(i, 2 + i // n_items % 3)),
            }
            settings = Settings(data_dir=Path(tmp), database_url=url, allowed_hosts=["testserver"])
            with TestClient(create_app(settings)) as client:
                client.cookies.set("recsae_session", person["token"])
                headers = {"X-CSRF-Token": person["csrf"], "Accept": "application/json"}
                out["post_in_process"] = median_ms(
                    lambda i: client.post(
                        f"/studies/{study_id}/ratings",
                        data={"position": str(i % n_items), "value": str(1 + i % 4)},
                        headers=headers,
                    ).raise_for_status()
                )
    return out


CHECKS = ("lost", "duplicated", "wrong_final", "history_lost", "history_extra", "phantom")
LAST_LINE = ("acknowledged", "resubmits", *CHECKS, "in_doubt", "errors", "rejected_503",
             "stored", "p50_ms", "p99_ms")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engines", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    # Below the limiter: at most RECSAE_CONCURRENCY_LIGHT (16) requests at once, even if every
    # connection lands on one worker (docs/scaling.md, "Admission").
    p.add_argument("--annotators", type=int, default=16)
    p.add_argument("--ratings", type=int, default=100, help="distinct items each annotator rates")
    p.add_argument("--rounds", type=int, default=3, help="times each item is rated (>= 2)")
    p.add_argument("--latents", type=int, default=400, help="latents in the factory run")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", action="store_true", help="time a rating's parts, one client")
    p.add_argument(
        "--server-repo", type=Path, default=REPO,
        help="serve with the code of this checkout (e.g. a git worktree of an older commit)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.rounds < 2 and not args.parts:
        p.error(f"--rounds {args.rounds}: use 2 or more, or nothing is re-rated")
    for name in ("annotators", "ratings"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.parts:
        out = {"parts_ms": {e: parts(e, args) for e in args.engines.split(",")}}
        print(json.dumps(out))
        return out

    engines = {name: measure(name, args) for name in args.engines.split(",")}
    print(
        f"{args.annotators} annotators x {args.ratings} items x {args.rounds} rounds at once "
        f"(values changing); uvicorn workers={args.workers}"
    )
    head = ("engine", "acked", "resubm.", "stored", "lost", "dup", "wrong", "hist.", "p50 ms",
            "p99 ms", "wall s")  # fmt: skip
    print("".join(f"{h:<10}" if k == 0 else f"{h:>9}" for k, h in enumerate(head)))
    for name, r in engines.items():
        print(
            f"{name:<10}{r['acknowledged']:>9}{r['resubmits']:>9}{r['stored']:>9}{r['lost']:>9}"
            f"{r['duplicated']:>9}{r['wrong_final']:>9}"
            f"{r['history_lost'] + r['history_extra']:>9}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['wall_s']:>9.2f}"
        )
        for line in r["first_errors"]:
            print(f"  error: {line}")
        if r["in_doubt"]:
            print(f"  {r['in_doubt']} keys in doubt (a write without an answer): not checked")
        if r["rejected_503"]:
            print(f"  {r['rejected_503']} refused by the admission limiter (503): nothing written")
        ok = all(r[k] == 0 for k in CHECKS) and r["resubmits"] > 0 and r["errors"] == 0
        print(
            f"  kept every acknowledged write ({', '.join(CHECKS)} = 0, resubmits > 0, "
            f"no errors): {'yes' if ok else 'NO'}; p99 < 200 ms: "
            f"{'met' if r['p99_ms'] < 200 else 'NOT met'}"
        )
    print(json.dumps({"details": engines}))
    out = {"engines": {n: {k: r[k] for k in LAST_LINE} for n, r in engines.items()}}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
