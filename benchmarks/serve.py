"""Latency and weight of the explorer's pages over a real uvicorn server.

    .venv/bin/python -m benchmarks.serve [--requests 200] [--first-loads 10]
    .venv/bin/python benchmarks/serve.py --requests 20 --first-loads 1   # quickest: no p99

Serves the demo DB (``<data_dir>/recsae.db``) if it holds a run, else generated runs: one with
1024 latents (15 examples of 20-item histories each, as the worker writes), 2000 items and 600
users, and a synthetic run with artifacts (``tests.backend.synthetic_run``) for the user page,
which steers from them.

- ``median_ms`` / ``p99_ms`` (target: median < 50 ms): sequential requests on one keep-alive
  connection, after a warm-up, ``n`` of them per page (``--requests``; ``p99_ms`` is the
  nearest-rank 99th percentile, given only from 200 samples on: null below), for the latent
  list, the latent page, the users index, the items index, the user page, and the latent map
  (``latent map``: ``/runs/<run>/map``, the HTML page with every latent's point embedded;
  ``latent map json``: its JSON twin ``/runs/<run>/map.json``; ``points`` says how many
  latents it drew: a run published before the lenses has none).
- ``first_load_ms`` / ``first_load_bytes`` (targets: < 500 ms, < 1,500,000 bytes) for the latent
  page and the run report: a cold load on loopback, as a browser with an empty cache does it —
  a new connection, the HTML, then every ``<script src>``, ``<link href>`` and ``<img src>`` it
  references, one after another, all with ``Accept-Encoding: gzip``; bytes are what came over
  the wire (compressed bodies plus response headers). The median of ``--first-loads`` such loads
  (each on another latent). With Debian chromium present, the same pages are also opened in a
  fresh Playwright context (median): ``browser_load_ms`` to the ``load`` event (which includes
  evaluating plotly.js and drawing the figures), ``browser_fetched_ms`` to the last byte of the
  page and its assets, ``browser_bytes`` as chromium counted them (transferSize).

The last line printed is one JSON object: ``pages.<name>`` holds each page's figures.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: python benchmarks/serve.py

from backend.serve import background_server  # noqa: E402
from core.settings import Settings, get_settings  # noqa: E402
from core.store import migrate  # noqa: E402
from core.store.engine import session_factory  # noqa: E402
from core.store.schema import Run  # noqa: E402
from tests.backend.factories import fixture_rows  # noqa: E402
from tests.backend.synthetic_run import make_run  # noqa: E402

N_LATENTS = 1024
CHROMIUM = Path("/usr/bin/chromium")
# What a browser loads from a page: scripts, stylesheets and icons, images.
ASSET = re.compile(r'<(?:script[^>]*?\ssrc|link[^>]*?\shref|img[^>]*?\ssrc)="([^"]+)"')


class Target(NamedTuple):
    run_id: str  # the run of the report, latent and index pages
    n_latents: int
    n_users: int
    steer_run: str  # a run with artifacts, for the user page
    source: str


def demo_run(settings: Settings) -> Target | None:
    """The newest run in the configured DB, or None if there is none."""
    db = settings.data_dir / "recsae.db"
    if settings.database_url is None and not db.is_file():
        return None
    migrate.upgrade(settings.resolved_database_url)
    with session_factory(settings.resolved_database_url)() as session:
        if not session.scalar(select(func.count()).select_from(Run)):
            return None
        run = session.scalars(select(Run).order_by(Run.created_at.desc())).first()
        assert run is not None
        return Target(run.id, run.n_latents, run.n_users, run.id, "demo")


def generated_settings(data_dir: Path) -> tuple[Settings, Target]:
    """A DB with one realistic-size run (1024 latents, 2000 items, 600 users) and a synthetic run
    with artifacts of the same size, for the user page."""
    from core.store.writes import publish_run

    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    migrate.upgrade(settings.resolved_database_url)
    rows = fixture_rows(run_id="bench", n_items=2000, n_users=600, n_latents=N_LATENTS, k=8)
    n_items = 2000
    examples: list[dict[str, Any]] = []
    for ex in rows["examples"]:  # 2 per role -> 5 per role, histories of 20 (docs/method.md §1.7)
        for copy in range(3 if ex["activation"] > 1.5 or ex["role"] == "random" else 2):
            history = [(ex["latent_idx"] * 7 + copy * 31 + j) % n_items for j in range(20)]
            examples.append({**ex, "user_idx": (ex["user_idx"] + copy) % 600, "history": history})
    rows["examples"] = examples
    for lat in rows["latents"]:  # the latent map's coordinates (docs/method.md §6.2), spread out
        angle, radius = lat["idx"] * 2.399963, (lat["idx"] + 1) ** 0.5
        lat["map_x"], lat["map_y"] = radius * math.cos(angle), radius * math.sin(angle)
    sessions = session_factory(settings.resolved_database_url)
    publish_run(sessions, **rows)
    make_run(data_dir, sessions, "bench-steer", n_items=n_items, n_users=600, d=64)
    return settings, Target("bench", N_LATENTS, 600, "bench-steer", "generated")


def time_requests(client: httpx.Client, urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        start = time.perf_counter()
        response = client.get(url, headers={"accept": "text/html"})
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} -> {response.status_code}: {response.text[:200]}")
    return times


P99_MIN_SAMPLES = 200  # fewer: the "p99" would be one of the slowest two or three requests


def summarise(times: list[float]) -> dict[str, float | None]:
    """Median and p99 (nearest rank: the ⌈0.99 n⌉-th smallest) of ``times``; p99 is None for
    fewer than :data:`P99_MIN_SAMPLES` samples."""
    ordered = sorted(times)
    n = len(ordered)
    p99 = round(ordered[math.ceil(0.99 * n) - 1], 2) if n >= P99_MIN_SAMPLES else None
    return {"median_ms": round(statistics.median(ordered), 2), "p99_ms": p99, "n": n}


def _wire_bytes(response: httpx.Response, body: bytes) -> int:
    """A response's size on the wire: status line and headers (HTTP/1.1 framing) and the body."""
    head = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return len(body) + head + len(f"HTTP/1.1 {response.status_code} OK\r\n\r\n")


def _get_raw(client: httpx.Client, url: str, accept: str) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", url, headers={"accept": accept, "accept-encoding": "gzip"}) as r:
        body = b"".join(r.iter_raw())  # as sent: still gzipped
    if r.status_code != 200:
        raise RuntimeError(f"GET {url} -> {r.status_code}")
    return r, body


def first_load(base: str, path: str) -> tuple[float, int]:
    """(ms, bytes) of one cold load: a new connection, the HTML, then every asset it names."""
    start = time.perf_counter()
    with httpx.Client(base_url=base) as client:  # a new client: no connection, no cache
        response, body = _get_raw(client, path, "text/html")
        total = _wire_bytes(response, body)
        html = gzip.decompress(body) if response.headers.get("content-encoding") == "gzip" else body
        for asset in dict.fromkeys(ASSET.findall(html.decode())):  # in page order, once each
            asset_response, asset_body = _get_raw(client, asset.replace("&amp;", "&"), "*/*")
            total += _wire_bytes(asset_response, asset_body)
    return (time.perf_counter() - start) * 1000, total


# In the page: (navigation start to the load event, to the last byte of the page or an asset,
# bytes chromium counted over the wire for the page and its assets).
BROWSER_TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const all = [nav, ...performance.getEntriesByType('resource')];
  return [nav.loadEventEnd - nav.startTime, Math.max(...all.map(e => e.responseEnd)),
          all.reduce((n, e) => n + e.transferSize, 0)];
}"""


def browser_loads(base: str, paths: list[str]) -> list[tuple[float, float, int]] | None:
    """:data:`BROWSER_TIMING` of each path opened in a fresh chromium context (empty cache), or
    None without Debian chromium. The load event also waits for plotly.js to be evaluated and the
    figures drawn; the second figure is the network's part."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    times: list[tuple[float, float, int]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless"])
        for path in paths:
            context = browser.new_context(base_url=base)
            page = context.new_page()
            page.goto(path, wait_until="load")
            load_ms, fetched_ms, n_bytes = page.evaluate(BROWSER_TIMING)
            times.append((float(load_ms), float(fetched_ms), int(n_bytes)))
            context.close()
        browser.close()
    return times


def first_loads(base: str, paths: list[str]) -> dict[str, float | int]:
    first_load(base, paths[0])  # warm the server (plotly's gzip is made once), not the client
    loads = [first_load(base, path) for path in paths]
    figures: dict[str, float | int] = {
        "first_load_ms": round(statistics.median(ms for ms, _ in loads), 1),
        "first_load_ms_max": round(max(ms for ms, _ in loads), 1),
        "first_load_bytes": int(statistics.median(n for _, n in loads)),
        "n_loads": len(loads),
    }
    browser = browser_loads(base, paths)
    if browser:
        figures["browser_load_ms"] = round(statistics.median(t[0] for t in browser), 1)
        figures["browser_fetched_ms"] = round(statistics.median(t[1] for t in browser), 1)
        figures["browser_bytes"] = int(statistics.median(t[2] for t in browser))
    return figures


def latency_pages(target: Target, requests: int) -> dict[str, list[str]]:
    run, n = target.run_id, requests
    sorts = ["activity", "ndcg", "id"]
    return {
        "latent list": [f"/runs/{run}/latents"] * n,
        "latent page": [f"/runs/{run}/latents/{(i * 37) % target.n_latents}" for i in range(n)],
        "users index": [
            f"/runs/{run}/users?_sort={sorts[i % 3]}&_page={i % 5 + 1}" for i in range(n)
        ],
        "items index": [
            f"/runs/{run}/items?_sort=title&_page={i % 5 + 1}" if i % 2 else f"/runs/{run}/items"
            for i in range(n)
        ],
        "user page": [
            f"/runs/{target.steer_run}/users/{(i * 7) % target.n_users}" for i in range(n)
        ],
        "latent map": [f"/runs/{run}/map"] * n,
        "latent map json": [f"/runs/{run}/map.json"] * n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=200,
        help="timed requests per page for median_ms / p99_ms (after 10 warm-up requests); "
        f"p99_ms needs >= {P99_MIN_SAMPLES}",
    )  # fmt: skip
    parser.add_argument(
        "--first-loads", type=int, default=10,
        help="cold loads (page + assets) per page for first_load_ms / first_load_bytes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.requests < 1 or args.first_loads < 1:
        parser.error("--requests and --first-loads must be at least 1")

    settings = get_settings()
    target = demo_run(settings)
    with tempfile.TemporaryDirectory() as tmp:
        if target is None:
            settings, target = generated_settings(Path(tmp))
        with background_server(settings) as base, httpx.Client(base_url=base) as client:
            results: dict[str, dict[str, Any]] = {}
            for name, urls in latency_pages(target, args.requests).items():
                time_requests(client, urls[:10])  # warm-up: imports, caches, first plots
                results[name] = summarise(time_requests(client, urls))
            points = client.get(f"/runs/{target.run_id}/map.json").json()["n_mapped"]
            results["latent map"]["points"] = results["latent map json"]["points"] = points
            n_loads, run = args.first_loads, target.run_id
            loads = {
                "latent page": [
                    f"/runs/{run}/latents/{(i * 53 + 1) % target.n_latents}" for i in range(n_loads)
                ],
                "run report": [f"/runs/{run}"] * n_loads,
            }
            for name, paths in loads.items():
                results.setdefault(name, {}).update(first_loads(base, paths))

    print(f"run {target.run_id!r} ({target.source}, {target.n_latents} latents), "
          f"{args.requests} requests each; user page on {target.steer_run!r}")  # fmt: skip
    print(f"{'page':<14}{'median ms':>12}{'p99 ms':>10}{'first load ms':>15}{'bytes':>12}")

    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{'—':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, r in results.items():
        print(
            f"{name:<14}{cell(r.get('median_ms'), 12, 2)}{cell(r.get('p99_ms'), 10, 2)}"
            f"{cell(r.get('first_load_ms'), 15, 1)}{r.get('first_load_bytes', 0):>12,}"
        )
    if args.requests < P99_MIN_SAMPLES:
        print(f"p99 not given: {args.requests} requests per page, it needs {P99_MIN_SAMPLES}")
    out = {
        "run": target.run_id, "source": target.source, "n_latents": target.n_latents,
        "requests": args.requests, "pages": results,
    }  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
