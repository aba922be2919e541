"""Bursts: 200 latent reads at once, then 200 segment steers at once, over SQLite and PostgreSQL.

    .venv/bin/python benchmarks/burst.py                     # both engines, 200 per burst
    .venv/bin/python benchmarks/burst.py --engines sqlite --size 60

Per engine, a throw-away database (PostgreSQL: a server started for the run,
tests/postgres_server.py) holds a synthetic run (tests/backend/synthetic_run.py, as
benchmarks/load.py builds it, smaller by default); ``python -m backend.serve --workers 2`` serves
it on loopback and every page kind is rendered and every worker's engine built before the clock
starts. Then, each on ``--size`` fresh connections opened at once (a bare asyncio HTTP/1.1
client in this process, so the client's own CPU stays small): ``GET
/runs/<run>/latents/<i>.json`` for ``i`` = 0..size-1, and ``POST /api/runs/<run>/segment/steer``
with a different latent each. A burst the server cannot take
must be refused quickly (503 with Retry-After, docs/scaling.md "Admission"), never queued past
the client's time-out (``--timeout``, 60 s) nor failed with a 500. Right after each burst one
``GET /api/me`` is timed: a server that queued the burst answers it late.

Prints a table, a JSON line with the details (latency of the answers and the refusals), and as
the LAST line one JSON object with exactly these keys::

    {"engines": {"sqlite": {"burst_200": {"ok", "rejected_503", "errors_5xx_other",
                                          "timeouts", "after_ms"},
                            "burst_200_segment": {...}},
                 "postgres": {...}}}

(``burst_<size>`` with ``--size``.) Targets: ``errors_5xx_other`` = 0, ``timeouts`` = 0,
``after_ms`` < 100 for both bursts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import database, percentile, raw_request, server  # noqa: E402
from benchmarks.load import RUN_ID, build, warm  # noqa: E402
from core.settings import Settings  # noqa: E402

KEYS = ("ok", "rejected_503", "errors_5xx_other", "timeouts", "after_ms")


async def _burst(
    base: str, requests: list[tuple[str, str, dict[str, Any] | None]], timeout_s: float
) -> dict[str, Any]:
    """Every request at once, each on its own connection; then ``GET /api/me`` three times,
    and once more a second later."""

    async def one(method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, float]:
        data = b"" if body is None else json.dumps(body).encode()
        status, seconds, headers = await raw_request(base, method, path, data, timeout_s)
        if status == 503 and "retry-after" not in headers:
            return "503 without Retry-After", seconds
        return status, seconds

    started = time.perf_counter()
    results = await asyncio.gather(*(one(*req) for req in requests))
    burst_s = time.perf_counter() - started
    after = [await raw_request(base, "GET", "/api/me", b"", timeout_s) for _ in range(3)]
    await asyncio.sleep(1.0)
    settled = await raw_request(base, "GET", "/api/me", b"", timeout_s)
    statuses = [s for s, _ in results]
    ok = [t * 1000 for s, t in results if s == 200]
    refused = [t * 1000 for s, t in results if s == 503]
    other = [s for s in statuses if s not in (200, 503, "timeout")]
    unexpected = [s for s in other if not (isinstance(s, int) and s >= 500)]
    if unexpected:  # a 4xx or a reset means the benchmark asked wrongly, or worse
        print(f"  unexpected answers: {sorted(map(str, unexpected))[:10]}", file=sys.stderr)
    return {
        "ok": len(ok),
        "rejected_503": len(refused),
        "errors_5xx_other": len(other),  # every answer that is neither a 200 nor a proper 503
        "timeouts": statuses.count("timeout"),
        # the first request after the burst (None if it failed); the next two in the details
        "after_ms": round(after[0][1] * 1000, 1) if after[0][0] == 200 else None,
        "details": {
            "burst_s": round(burst_s, 2),
            "ok_p50_ms": percentile(ok, 0.5),
            "ok_max_ms": percentile(ok, 1.0),
            "rejected_p50_ms": percentile(refused, 0.5),
            "rejected_max_ms": percentile(refused, 1.0),
            "after_ms_next": [round(a[1] * 1000, 1) for a in after[1:]],
            "after_1s_ms": round(settled[1] * 1000, 1),  # one more, a second later
            "after_status": [a[0] for a in after],
            "other": sorted(map(str, other))[:10],
        },
    }


def bursts(base: str, args: argparse.Namespace) -> dict[str, Any]:
    reads = [
        ("GET", f"/runs/{RUN_ID}/latents/{i % args.latents}.json", None) for i in range(args.size)
    ]
    steers = [
        ("POST", f"/api/runs/{RUN_ID}/segment/steer",
         {"edits": [{"latent": i % args.latents, "value": 2.0}]})
        for i in range(args.size)
    ]  # fmt: skip
    out = {f"burst_{args.size}": asyncio.run(_burst(base, reads, args.timeout))}
    time.sleep(2)  # the server's answers to the first burst are all sent; let it settle
    out[f"burst_{args.size}_segment"] = asyncio.run(_burst(base, steers, args.timeout))
    return out


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"burst-{engine}-") as tmp:
        data_dir = Path(tmp)
        with database(engine, data_dir) as url:
            build_s = build(url, data_dir, args)
            settings = Settings(data_dir=data_dir, database_url=url)
            with server(settings, args.workers, repo=args.server_repo) as base:
                warm(base, args)
                result = bursts(base, args)
    result["build_s"] = round(build_s, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=200, help="requests per burst")
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--timeout", type=float, default=60.0, help="the client's time-out, seconds")
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--users-in-run", type=int, default=2000, help="the run's recommender users")
    p.add_argument("--latents", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--server-repo", type=Path, default=REPO,
        help="serve with the code of this checkout (e.g. a git worktree of an older commit)",
    )  # fmt: skip
    args = p.parse_args()

    engines = {name: measure(name, args) for name in args.engines.split(",")}
    print(
        f"server code: {args.server_repo}; "
        f"bursts of {args.size}; uvicorn workers={args.workers}; run: {args.items:,} items, "
        f"{args.users_in_run:,} users, {args.latents} latents; client time-out {args.timeout}s"
    )
    print(f"{'engine':<10}{'burst':<22}" + "".join(f"{k:>17}" for k in KEYS))
    for name, r in engines.items():
        for burst, f in r.items():
            if isinstance(f, dict):
                print(f"{name:<10}{burst:<22}" + "".join(f"{f[k]!s:>17}" for k in KEYS))
    print(json.dumps({"details": engines}))
    last = {
        name: {b: {k: f[k] for k in KEYS} for b, f in r.items() if isinstance(f, dict)}
        for name, r in engines.items()
    }
    print(json.dumps({"engines": last}))


if __name__ == "__main__":
    main()
