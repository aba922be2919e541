"""Annotation under load (issue 10): 20 annotators submit 100 ratings each, all at once, against
uvicorn with two workers, over SQLite and over PostgreSQL.

    .venv/bin/python benchmarks/annotate.py                   # both engines
    .venv/bin/python benchmarks/annotate.py --engines sqlite --annotators 5
    .venv/bin/python benchmarks/annotate.py --parts    # one client: ms per part of a rating POST

Per engine, a throw-away database (PostgreSQL: a server started for the run, the helpers of
benchmarks/load.py) holds the factory run (tests/backend/factories.py) with ``--latents``
latents, one study of every latent with a concept of confidence >= 0.8, ``--annotators``
accounts assigned to it and a signed-in session each. ``python -m backend.serve --workers 2``
serves it on loopback (benchmarks/load.py's ``server``). Then one thread per annotator, each
with its own connection, posts its ratings as the annotation page's form does (the session
cookie, the CSRF token, ``Accept: application/json``), one after another, as fast as the
server answers; every annotator rates the same items in its own random order with random
values, and rates ``--resubmit`` of them twice (a change). Afterwards the database is read
back: every acknowledged rating must be there with the value last acknowledged.

Prints a table, one JSON line with the details, and as the LAST line exactly::

    {"engines": {"sqlite": {"submitted", "stored", "lost", "duplicated", "p50_ms", "p99_ms"},
                 "postgres": {...}}}

``submitted``: ratings acknowledged (200); ``stored``: rating rows of the study; ``lost``:
acknowledged (annotator, item) keys missing or holding another value than the last one
acknowledged; ``duplicated``: rows beyond one per key. Targets: lost = duplicated = 0,
p99_ms < 200.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.load import database, server  # noqa: E402
from core.settings import Settings  # noqa: E402

RUN_ID = "annotate"
PASSWORD = "benchmark password"


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


def annotate(
    base: str, study_id: int, person: dict[str, Any], args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """One annotator's submissions: latencies (ms), acknowledged values by position, errors."""
    import httpx

    rng = random.Random(seed)
    positions = rng.sample(range(args.ratings), args.ratings)
    positions += rng.sample(positions, args.resubmit)  # changes of earlier ratings
    headers = {"X-CSRF-Token": person["csrf"], "Accept": "application/json", "Origin": base}
    acked: dict[int, int] = {}
    latencies: list[float] = []
    errors: list[str] = []
    with httpx.Client(
        base_url=base, headers=headers, cookies={"recsae_session": person["token"]}, timeout=60
    ) as client:
        # Before the clock: this connection's worker renders the page and parses a (refused) form.
        client.get(f"/studies/{study_id}/annotate.json").raise_for_status()
        client.post(f"/studies/{study_id}/ratings", data={"position": "0", "value": "9"})
        for position in positions:
            value = rng.randint(1, 4)
            started = time.perf_counter()
            try:
                r = client.post(
                    f"/studies/{study_id}/ratings",
                    data={"position": str(position), "value": str(value)},
                )
            except httpx.TransportError as exc:  # counted, not acknowledged; the next reconnects
                errors.append(f"{type(exc).__name__}: {exc} (rating {position})")
                continue
            finally:
                latencies.append(1000 * (time.perf_counter() - started))
            if r.status_code == 200:
                acked[position] = value
            else:
                errors.append(f"{r.status_code}: {r.text[:200]}")
    return {"latencies": latencies, "acked": acked, "errors": errors, "submitted": len(latencies)}


def check(
    url: str, study_id: int, people: list[dict[str, Any]], results: list[dict[str, Any]]
) -> dict[str, int]:
    """Read the study back: stored rows, lost and duplicated ratings."""
    from sqlalchemy import func, select

    from core.store.engine import session_factory
    from core.store.schema import Rating, StudyItem

    with session_factory(url)() as session:
        key_of = {
            (i.latent_idx, i.concept_id): i.position
            for i in session.scalars(select(StudyItem).filter_by(study_id=study_id))
        }
        rows = session.execute(
            select(Rating.account_id, Rating.latent_idx, Rating.concept_id, Rating.value).filter_by(
                study_id=study_id
            )
        ).all()
        stored = session.scalar(
            select(func.count()).select_from(Rating).filter_by(study_id=study_id)
        )
    found: dict[tuple[int, int], list[int | None]] = {}
    for account, latent, concept, value in rows:
        found.setdefault((account, key_of[(latent, concept)]), []).append(value)
    duplicated = sum(len(v) - 1 for v in found.values())
    lost = sum(
        1
        for person, res in zip(people, results, strict=True)
        for position, value in res["acked"].items()
        if found.get((person["id"], position), [None])[-1] != value
    )
    return {"stored": int(stored or 0), "lost": lost, "duplicated": duplicated}


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    with tempfile.TemporaryDirectory(prefix=f"annotate-{engine}-") as tmp:
        data_dir = Path(tmp)
        with database(engine, data_dir) as url:
            study_id, n_items, people = build(url, args)
            settings = Settings(data_dir=data_dir, database_url=url)
            with server(settings, args.workers) as base:
                start = threading.Barrier(len(people))

                def one(k: int) -> dict[str, Any]:
                    start.wait()
                    return annotate(base, study_id, people[k], args, args.seed + k)

                began = time.perf_counter()
                with ThreadPoolExecutor(len(people)) as pool:
                    results = list(pool.map(one, range(len(people))))
                wall = time.perf_counter() - began
            stored = check(url, study_id, people, results)
    latencies = np.array([ms for r in results for ms in r["latencies"]])
    errors = [e for r in results for e in r["errors"]]
    return {
        "submitted": sum(len(r["acked"]) for r in results),
        **stored,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "requests": int(latencies.size),
        "errors": len(errors),
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--ratings", type=int, default=100, help="distinct items each annotator rates")
    p.add_argument("--resubmit", type=int, default=0, help="of those, rated a second time")
    p.add_argument("--latents", type=int, default=400, help="latents in the factory run")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", action="store_true", help="time a rating's parts, one client")
    args = p.parse_args()
    if args.parts:
        print(json.dumps({"parts_ms": {e: parts(e, args) for e in args.engines.split(",")}}))
        return

    engines = {name: measure(name, args) for name in args.engines.split(",")}
    print(
        f"{args.annotators} annotators x {args.ratings} ratings (+{args.resubmit} changes) "
        "at once; "
        f"uvicorn workers={args.workers}"
    )
    head = ("engine", "submitted", "stored", "lost", "dup", "p50 ms", "p99 ms", "wall s")
    print("".join(f"{h:<10}" if k == 0 else f"{h:>9}" for k, h in enumerate(head)))
    for name, r in engines.items():
        print(
            f"{name:<10}{r['submitted']:>9}{r['stored']:>9}{r['lost']:>9}{r['duplicated']:>9}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['wall_s']:>9.2f}"
        )
        for line in r["first_errors"]:
            print(f"  error: {line}")
        ok = r["lost"] == 0 and r["duplicated"] == 0 and r["p99_ms"] < 200
        print(f"  targets (lost = duplicated = 0, p99 < 200 ms): {'met' if ok else 'NOT met'}")
    print(json.dumps({"details": engines}))
    keys = ("submitted", "stored", "lost", "duplicated", "p50_ms", "p99_ms")
    print(json.dumps({"engines": {n: {k: r[k] for k in keys} for n, r in engines.items()}}))


if __name__ == "__main__":
    main()
