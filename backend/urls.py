"""Every URL the app links to, built in one place (datasette's ``url_builder`` idea).

Templates get this module as ``urls``; routes use it for the links they put in JSON. A page's
JSON twin is the same path with ``.json`` appended (:func:`as_json`). Query parameters that
control the view (sort, page, size, fragment) start with ``_``; the others are filters.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PLOTLY_JS = "/vendor/plotly.min.js"
SWAGGER_DIR = "/vendor/swagger"


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def _query(params: dict[str, object]) -> str:
    kept = {k: v for k, v in params.items() if v is not None and v != ""}
    return f"?{urlencode(kept)}" if kept else ""


def runs() -> str:
    return "/"


def run(run_id: str) -> str:
    return f"/runs/{_seg(run_id)}"


def latents(run_id: str, **params: object) -> str:
    """The latent list; keyword arguments become query parameters (``None`` dropped)."""
    return f"{run(run_id)}/latents{_query(params)}"


def latent(run_id: str, idx: int) -> str:
    return f"{run(run_id)}/latents/{int(idx)}"


def item(run_id: str, idx: int) -> str:
    return f"{run(run_id)}/items/{int(idx)}"


def items(run_id: str, **params: object) -> str:
    """The items index (search, sort, pages); keyword arguments become query parameters."""
    return f"{run(run_id)}/items{_query(params)}"


def users(run_id: str, **params: object) -> str:
    """The users index (search, sort, pages); keyword arguments become query parameters."""
    return f"{run(run_id)}/users{_query(params)}"


def user(run_id: str, idx: int) -> str:
    """The user page (served by the steering routes)."""
    return f"{run(run_id)}/users/{int(idx)}"


# Content hashes of the static files and of plotly.js, set once at startup by backend.assets:
# the URLs carry them as ?v=<hash>, so a browser keeps each file until its bytes change.
_VERSIONS: dict[str, str] = {}


def set_versions(static_files: dict[str, str], plotly: str) -> None:
    _VERSIONS.clear()
    _VERSIONS.update(static_files)
    _VERSIONS[PLOTLY_JS] = plotly


def _versioned(url: str, key: str) -> str:
    version = _VERSIONS.get(key)
    return f"{url}?v={version}" if version else url


def static(name: str) -> str:
    """A file of frontend/static, with its content hash (templates also call it static_url)."""
    return _versioned(f"/static/{name}", name)


def plotly_js(full: bool = False) -> str:
    """The cartesian plotly.js bundle; ``full``: the whole one (backend/assets.py says why)."""
    if full:
        return _versioned(PLOTLY_JS, PLOTLY_JS)
    return static("vendor/plotly-cartesian.min.js")


def docs() -> str:
    return "/docs"


def as_json(url: str) -> str:
    """The JSON twin of a page URL: ``.json`` goes on the path, before the query string."""
    parts = urlsplit(url)
    path = "/index" if parts.path in ("", "/") else parts.path
    return urlunsplit(parts._replace(path=f"{path}.json"))


def with_params(url: str, **params: object) -> str:
    """``url`` with some query parameters replaced (``None`` removes one): sort links, pagers."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=False))
    for key, value in params.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = str(value)
    return urlunsplit(parts._replace(query=urlencode(query)))


def list_links(
    here: str, page_no: int, pages: int, sort: str, order: str, keys: tuple[str, ...]
) -> dict[str, str | None | dict[str, str]]:
    """A paged, sortable list's links: previous / next page, and per sort key the list sorted by
    it (descending first; the current key's link flips its order)."""

    def sort_link(key: str) -> str:
        flip = "asc" if (sort == key and order == "desc") else "desc"
        return with_params(here, _sort=key, _order=flip, _page=None)

    return {
        "prev": with_params(here, _page=page_no - 1) if page_no > 1 else None,
        "next": with_params(here, _page=page_no + 1) if page_no < pages else None,
        "sort": {key: sort_link(key) for key in keys},
    }
