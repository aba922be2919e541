"""Static files that weigh little and are fetched once: content-hashed URLs, a year of caching,
plotly.js gzipped once, and the favicon.

At startup every file under ``frontend/static`` and the plotly.js bundle is hashed (sha256 of its
bytes, first 8 hex digits); ``urls.static(name)`` and ``urls.plotly_js()`` then carry ``?v=<hash>``.
A request whose ``v`` is the file's current hash is answered with ``Cache-Control: public,
max-age=31536000, immutable`` (new bytes give a new URL, so a cached copy is never stale); any
other request for the file (no ``v``, an old one) must revalidate. Every other response is
compressed by Starlette's ``GZipMiddleware``.

plotly.js: the pages draw only cartesian traces (bar, scatter, histogram), so they load the
official cartesian bundle, vendored from npm as ``frontend/static/vendor/plotly-cartesian.min.js``
(``plotly.js-cartesian-dist-min``, the version of the ``plotly`` package's plotly.js, MIT licence
beside it: 1.5 MB, about 0.5 MB gzipped, against 4.7 MB and 1.4 MB for the full bundle). A page
that needs another trace type sets ``needs_plotly = 'full'`` and gets the ``plotly`` package's
full bundle at ``urls.PLOTLY_JS``. Both are compressed once and kept (:class:`Precompressed`),
since compressing them per request would cost more than serving them.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import QueryParams
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Scope

from backend import urls

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
GZIP_MIN_BYTES = 500  # smaller bodies gain less than the gzip header costs
FAVICON = "favicon.svg"
PLOTLY_CARTESIAN = "vendor/plotly-cartesian.min.js"  # urls.plotly_js() (see the module doc)


def content_hash(data: bytes) -> str:
    """The version in a static URL: the first 8 hex digits of the sha256 of the file's bytes."""
    return hashlib.sha256(data).hexdigest()[:8]


def content_hashes(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (path relative to it, with ``/``) → its content hash."""
    return {
        path.relative_to(directory).as_posix(): content_hash(path.read_bytes())
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def cache_control(version: str | None, current: str | None) -> str:
    return IMMUTABLE if version is not None and version == current else REVALIDATE


class HashedStaticFiles(StaticFiles):
    """StaticFiles whose answers are cached for a year when asked for by their current hash;
    the large files in ``precompressed`` are answered from their kept gzip."""

    def __init__(
        self,
        *,
        directory: Path,
        hashes: dict[str, str],
        precompressed: dict[str, Precompressed] | None = None,
    ) -> None:
        super().__init__(directory=directory)
        self.hashes = hashes
        self.precompressed = precompressed or {}

    async def get_response(self, path: str, scope: Scope) -> Response:
        kept = self.precompressed.get(Path(path).as_posix())
        if kept is not None and scope["method"] in ("GET", "HEAD"):
            return kept.response(Request(scope))
        response = await super().get_response(path, scope)
        version = QueryParams(scope.get("query_string", b"")).get("v")
        response.headers["Cache-Control"] = cache_control(
            version, self.hashes.get(Path(path).as_posix())
        )
        return response


class Precompressed:
    """One large file's bytes and their gzip (made once, on first use or by :meth:`warm`)."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.data = path.read_bytes()
        self.version = content_hash(self.data)
        self.media_type = media_type
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.data, compresslevel=9, mtime=0)
            return self._gzipped

    def warm(self) -> None:
        """Compress in the background, so the first browser to ask does not wait for it."""
        if self._gzipped is None:
            threading.Thread(target=self.gzipped, name="gzip-warm", daemon=True).start()

    def response(self, request: Request) -> Response:
        headers = {
            "Cache-Control": cache_control(request.query_params.get("v"), self.version),
            "Vary": "Accept-Encoding",
        }
        if "gzip" in request.headers.get("accept-encoding", ""):
            # GZipMiddleware leaves a response that already has a Content-Encoding alone.
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzipped(), media_type=self.media_type, headers=headers)
        return Response(self.data, media_type=self.media_type, headers=headers)


@cache
def precompressed(path: Path, media_type: str) -> Precompressed:
    """One :class:`Precompressed` per file and process (every app created shares it)."""
    return Precompressed(path, media_type)


def install(app: FastAPI, static_dir: Path, plotly_js: Path) -> None:
    """Mount the hashed static files, plotly.js, /favicon.ico, and compress every response.

    Call it after the other middleware is installed: the gzip layer must be the outermost, so
    it compresses what the others answer too (error pages included).
    """
    hashes = content_hashes(static_dir)
    cartesian = precompressed(static_dir / PLOTLY_CARTESIAN, "text/javascript")
    cartesian.warm()
    plotly = precompressed(plotly_js, "text/javascript")  # compressed when first asked for
    urls.set_versions(hashes, plotly.version)
    static = HashedStaticFiles(
        directory=static_dir, hashes=hashes, precompressed={PLOTLY_CARTESIAN: cartesian}
    )
    app.mount("/static", static, name="static")

    @app.get(urls.PLOTLY_JS, include_in_schema=False)
    def plotly_bundle(request: Request) -> Response:
        return plotly.response(request)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # The pages link the SVG (base.html); this answers clients that ask by the old name.
        return FileResponse(
            static_dir / FAVICON,
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=6)
