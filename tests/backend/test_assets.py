"""Issue 11 §4, weight and speed: gzip, content-hashed static URLs cached for a year, plotly.js
gzipped once, a favicon on every page."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from backend import assets
from backend.app import PLOTLY_JS, create_app
from backend.deps import STATIC_DIR
from core.settings import Settings

HTML = {"accept": "text/html"}
GZIP = {"accept-encoding": "gzip"}
PAGES = ["/", "/runs/fixture", "/runs/fixture/latents", "/runs/fixture/latents/3",
         "/runs/fixture/items", "/runs/fixture/users", "/runs/fixture/items/2"]  # fmt: skip


class Sent(NamedTuple):
    status_code: int
    headers: httpx.Headers
    body: bytes  # as sent: httpx would decode a gzipped body when it is read


def raw(client: TestClient, url: str, headers: dict[str, str]) -> Sent:
    with client.stream("GET", url, headers=headers) as response:
        return Sent(response.status_code, response.headers, b"".join(response.iter_raw()))


def test_pages_and_json_are_gzipped_when_the_client_accepts_it(client: TestClient) -> None:
    page = raw(client, "/runs/fixture/latents", {**HTML, **GZIP})
    assert page.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in page.headers["vary"].lower()
    html = gzip.decompress(page.body).decode()
    assert "Latents of fixture" in html and len(page.body) < len(html) / 2
    twin = raw(client, "/runs/fixture/latents.json", GZIP)
    assert twin.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(twin.body))["total"] == 20


def test_no_gzip_without_accept_encoding_or_for_small_bodies(client: TestClient) -> None:
    plain = raw(client, "/runs/fixture/latents", {**HTML, "accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    small = raw(client, "/runs/fixture/latents/999.json", GZIP)  # a short 404 body
    assert small.status_code == 404 and "content-encoding" not in small.headers


def test_hashed_url_changes_when_the_bytes_change(tmp_path: Path) -> None:
    (tmp_path / "app.js").write_text("console.log(1)")
    before = assets.content_hashes(tmp_path)["app.js"]
    assert assets.content_hashes(tmp_path)["app.js"] == before  # same bytes, same URL
    (tmp_path / "app.js").write_text("console.log(2)")
    after = assets.content_hashes(tmp_path)["app.js"]
    assert after != before and re.fullmatch(r"[0-9a-f]{8}", after)


def test_pages_link_static_files_by_their_current_hash_cached_for_a_year(
    client: TestClient,
) -> None:
    html = client.get("/runs/fixture/latents/3", headers=HTML).text
    for name in ("app.css", "app.js", "favicon.svg"):
        version = assets.content_hash((STATIC_DIR / name).read_bytes())
        url = f"/static/{name}?v={version}"
        assert f'"{url}"' in html, name
        hit = client.get(url)
        assert hit.status_code == 200
        assert hit.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = client.get("/static/app.js?v=00000000")
    assert stale.headers["cache-control"] == "no-cache"  # an old URL must revalidate
    assert client.get("/static/app.js").headers["cache-control"] == "no-cache"


def test_plotly_is_served_gzipped_by_its_hash_and_under_1_5_mb(client: TestClient) -> None:
    """Issue 11 §4: the pages load the cartesian bundle (about 0.5 MB gzipped, not 1.4 MB)."""
    bundle = STATIC_DIR / assets.PLOTLY_CARTESIAN
    version = assets.content_hash(bundle.read_bytes())
    url = f"/static/{assets.PLOTLY_CARTESIAN}?v={version}"
    for page in ("/runs/fixture/latents/3", "/runs/fixture"):
        html = client.get(page, headers=HTML).text
        assert f'src="{url}"' in html, page
        assert "/vendor/plotly.min.js" not in html, page
    js = raw(client, url, GZIP)
    assert js.status_code == 200 and js.headers["content-encoding"] == "gzip"
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert len(js.body) < 600_000
    assert gzip.decompress(js.body) == bundle.read_bytes()
    plain = raw(client, f"/static/{assets.PLOTLY_CARTESIAN}", {"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.body == bundle.read_bytes()
    assert plain.headers["cache-control"] == "no-cache"
    licence = client.get("/static/vendor/plotly-cartesian.LICENSE")
    assert licence.status_code == 200 and "MIT License" in licence.text


def test_cartesian_plotly_draws_every_trace_type_the_pages_use() -> None:
    """The figures' trace types (backend/figures.py, the study results) are all in the bundle."""
    used = set()
    root = Path(__file__).resolve().parents[2]
    for source in (root / "backend/figures.py", root / "backend/routes/study_results.py"):
        used |= set(re.findall(r"go\.(\w+)\(", source.read_text())) - {"Figure"}
    assert used, "no trace found: the test would pass vacuously"
    header = (STATIC_DIR / assets.PLOTLY_CARTESIAN).read_text()[:200]
    assert "cartesian" in header
    cartesian = {"Bar", "Box", "Contour", "Heatmap", "Histogram", "Histogram2d", "Image",
                 "Histogram2dContour", "Pie", "Scatter", "Scatterternary", "Violin"}  # fmt: skip
    assert used <= cartesian, f"set needs_plotly = 'full' on the page drawing {used - cartesian}"


def test_full_plotly_bundle_stays_available_for_other_trace_types(client: TestClient) -> None:
    version = assets.content_hash(PLOTLY_JS.read_bytes())
    js = raw(client, f"/vendor/plotly.min.js?v={version}", GZIP)
    assert js.status_code == 200 and js.headers["content-encoding"] == "gzip"
    assert gzip.decompress(js.body) == PLOTLY_JS.read_bytes()


@pytest.mark.parametrize("url", PAGES)
def test_every_page_links_a_favicon_that_is_served(client: TestClient, url: str) -> None:
    html = client.get(url, headers=HTML).text
    link = re.search(r'<link rel="icon" href="([^"]+)"', html)
    assert link is not None, url
    icon = client.get(link.group(1))
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_favicon_ico_is_answered(client: TestClient) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.content.startswith(b"<svg")


def test_streamed_answers_survive_gzip_and_event_streams_are_left_alone(
    settings: Settings,
) -> None:
    """Explain's progress (issue 11 §6) will stream: gzip flushes each chunk whole, and
    ``text/event-stream`` is never compressed (a browser must see each event as it comes)."""
    app = create_app(settings)
    lines = [json.dumps({"stage": i, "pad": "x" * 600}) + "\n" for i in range(3)]

    @app.get("/_stream/{media}")
    def stream(media: str) -> StreamingResponse:
        kind = "text/event-stream" if media == "events" else "application/x-ndjson"
        return StreamingResponse(iter(line.encode() for line in lines), media_type=kind)

    with TestClient(app) as local:
        ndjson = raw(local, "/_stream/ndjson", GZIP)
        assert ndjson.headers["content-encoding"] == "gzip"
        assert gzip.decompress(ndjson.body).decode() == "".join(lines)
        events = raw(local, "/_stream/events", GZIP)
        assert "content-encoding" not in events.headers
        assert events.body.decode() == "".join(lines)
