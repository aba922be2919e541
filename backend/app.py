"""The explorer's FastAPI app: pages, their JSON twins, static files, offline API docs.

Nothing here loads from the internet: plotly.js comes from the installed ``plotly`` package and
Swagger UI 5 from ``swagger-ui-py``, both served by us.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from backend import assets, errors, limits, security, urls
from backend.deps import STATIC_DIR
from backend.routes import auth, explain, find, invites, items, latents, runs, steer
from backend.routes.lenses import router as lenses_router  # map, neighbours
from backend.routes.studies import router as studies_router  # human evaluation
from backend.routes.study_designer import router as study_designer_router  # list, new study
from backend.routes.study_results import router as study_results_router
from backend.steering.cache import DATA_DIR, freeze_heap
from core.settings import Settings, get_settings
from core.store import migrate
from core.store.engine import session_factory

PLOTLY_JS = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
SWAGGER_UI = Path(str(files("swagger_ui") / "static"))


def build_routes(app: FastAPI) -> int:
    """Build every included router's request handlers now; returns how many routes there are.

    FastAPI (0.165) builds an included router's handlers (dependencies, pydantic validators) on
    the first request that reaches the router, in the worker that serves it: 100-400 ms on
    whichever request first asks, in every worker process, after start-up or right after a
    burst (docs/scaling.md, "Admission"). Built at start-up, before the heap is frozen. Older
    FastAPI built them in ``include_router``: nothing left to do."""
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    if iter_contexts is None:
        return len(app.router.routes)
    built = sum(1 for _ in iter_contexts(app.router.routes))
    for route in app.router.routes:
        low_priority = getattr(route, "effective_low_priority_routes", None)
        if low_priority is not None:
            built += len(low_priority())
    return built


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: the environment's); migrates the DB at startup."""
    settings = settings or get_settings()
    url = settings.resolved_database_url

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrate.upgrade(url)
        # One thread per pooled connection and a few more (backend/limits.py, docs/scaling.md)
        to_thread.current_default_thread_limiter().total_tokens = limits.thread_tokens(settings)
        build_routes(_app)  # not on some request's clock
        freeze_heap(starting=True)  # what starting built never pauses a request's collection
        yield

    app = FastAPI(
        title="RecSAE Explorer",
        summary="Browse the latents of sparse autoencoders trained on recommenders; steer them.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours is below
        redoc_url=None,
    )
    app.state.settings = settings
    # The pool sized from the admission caps; a connection not free within a second is a 503.
    app.state.sessions = session_factory(
        url, limits.pool_size(settings), settings.db_pool_timeout_s
    )
    # steering reads Run.artifact_dir relative to this data directory (docs/architecture.md)
    app.state.sessions.configure(info={DATA_DIR: settings.data_dir})
    errors.install(app)
    limits.install(app, settings.max_body_bytes)
    security.install(app, settings)
    limits.install_admission(app, settings)  # outside the session lookup, which reads the DB

    app.mount(
        urls.SWAGGER_DIR,
        StaticFiles(directory=SWAGGER_UI),
        name="swagger",
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="RecSAE Explorer API",
            swagger_js_url=f"{urls.SWAGGER_DIR}/swagger-ui-bundle.js",
            swagger_css_url=f"{urls.SWAGGER_DIR}/swagger-ui.css",
            swagger_favicon_url=f"{urls.SWAGGER_DIR}/favicon-32x32.png",
            # Swagger UI would otherwise send the spec to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.include_router(steer.api_router)  # first: the hot steering POSTs (backend/routes/steer.py)
    for module in (runs, latents, find, items, steer, explain, auth, invites):
        app.include_router(module.router)
    app.include_router(studies_router)
    app.include_router(study_designer_router)
    app.include_router(study_results_router)
    app.include_router(lenses_router)
    assets.install(app, STATIC_DIR, PLOTLY_JS)  # last: its gzip layer wraps all the others
    return app
