"""Runs: the index of published runs and each run's report (all its metric tables)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend import figures, urls
from backend.deps import Context, RunDep, SessionDep, page
from backend.store import reads
from backend.store.schema import Run

router = APIRouter(tags=["runs"])

Scalar = int | float | str | bool | None
_MAX_INLINE_LIST = 16


def _is_scalar(value: object) -> bool:
    """A table cell: a number, text, or a short list of numbers/text (e.g. bootstrap CIs)."""
    if value is None or isinstance(value, int | float | str | bool):
        return True
    return (
        isinstance(value, list)
        and len(value) <= _MAX_INLINE_LIST
        and all(v is None or isinstance(v, int | float | str | bool) for v in value)
    )


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def metric_tables(data: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """Turn any nested dict of numbers into tables, whatever keys the worker wrote.

    A dict's scalar entries become one two-column table; two or more sibling dicts that hold
    only scalars become one matrix (rows = the siblings, columns = the union of their keys: e.g.
    ``recommender`` → mostpop / base / sae × ndcg@10 / hr@10); deeper dicts recurse with their
    path as title. Anything else (long lists) is shown as its length, never dropped silently.
    Returns ``[{"title", "columns", "rows": [[label, cell...]]}]``.
    """
    tables: list[dict[str, Any]] = []
    scalars = [[k, v] for k, v in data.items() if _is_scalar(v)]
    scalars += [
        [k, f"[{len(v)} values]"]
        for k, v in data.items()
        if isinstance(v, list) and not _is_scalar(v)
    ]
    if scalars:
        tables.append({"title": title, "columns": ["", "value"], "rows": scalars})
    children = {k: v for k, v in data.items() if isinstance(v, dict)}
    flat = {k: v for k, v in children.items() if v and all(_is_scalar(x) for x in v.values())}
    if len(flat) >= 2:
        columns: list[str] = []
        for row in flat.values():
            columns += [c for c in row if c not in columns]
        tables.append(
            {
                "title": title,
                "columns": ["", *columns],
                "rows": [[k, *(row.get(c) for c in columns)] for k, row in flat.items()],
            }
        )
        children = {k: v for k, v in children.items() if k not in flat}
    for key, child in children.items():
        tables += metric_tables(child, f"{title} › {key}")
    return tables


def headline(run: Run) -> dict[str, Any]:
    """The few numbers the run index shows (None where the worker has not written them)."""
    m = run.metrics or {}
    concepts = _dig(m, "concepts")
    return {
        "base_ndcg@10": _dig(m, "recommender", "base", "ndcg@10"),
        "sae_ndcg@10": _dig(m, "recommender", "sae", "ndcg@10"),
        "mostpop_ndcg@10": _dig(m, "recommender", "mostpop", "ndcg@10"),
        "fvu_test": _dig(m, "sae", "fvu_test"),
        "pca_fvu_test": _dig(m, "sae", "pca_fvu_test"),
        "dead_fraction": _dig(m, "sae", "dead_fraction"),
        "concepts": {
            k: v
            for k, v in (concepts or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
    }


def run_summary(run: Run) -> dict[str, Any]:
    """What every page says about its run (and the JSON twins repeat)."""
    return {
        "id": run.id,
        "dataset": run.dataset,
        "recommender": run.recommender,
        "status": run.status,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "n_users": run.n_users,
        "n_items": run.n_items,
        "n_latents": run.n_latents,
        "k": run.k,
        "item_category": run.item_category,
        "item_name": run.item_name,
        "url": urls.run(run.id),
        "latents_url": urls.latents(run.id),
    }


@page(router, "/", "runs.html", name="runs")
def runs_index(session: SessionDep) -> Context:
    """Published runs with their headline metrics."""
    return {"runs": [{**run_summary(r), "headline": headline(r)} for r in reads.list_runs(session)]}


@page(router, "/runs/{run_id}", "run.html", name="run")
def run_report(run: RunDep, session: SessionDep) -> Context:
    """A run's report: every metric table the worker wrote, its config, and the figures."""
    metrics = run.metrics or {}
    sections = [
        {"name": key, "tables": metric_tables(value, key)}
        if isinstance(value, dict)
        else {
            "name": key,
            "tables": [
                {
                    "title": key,
                    "columns": ["", "value"],
                    "rows": [[key, value if _is_scalar(value) else str(value)]],
                }
            ],
        }
        for key, value in metrics.items()
    ]
    return {
        "run": {**run_summary(run), "headline": headline(run)},
        "sections": sections,
        "config": metric_tables(run.config or {}, "config"),
        "figures": {
            "confidence": figures.confidence_distribution(reads.confidence_values(session, run.id))
        },
    }
