"""A study's results, for admins (docs/method.md §5): ratings per method, agreement,
the items annotators disagree on most, and human vs automatic in one table and one plot; the
page's JSON twin is the JSON export, ``results.csv`` the CSV one (a row per rating)."""

from __future__ import annotations

import csv
import io
from typing import Any

import plotly.graph_objects as go
from fastapi import APIRouter
from fastapi.responses import Response

from backend.auth import AdminDep
from backend.deps import Context, SessionDep, page
from backend.errors import responses
from backend.routes.studies import StudyDep, study_row, study_url
from core import study_reads

router = APIRouter(tags=["studies"])

_LABELS = {"tfidf": "TF-IDF", "llm": "LLM"}
_COLORS = {"tfidf": "#0b62c4", "llm": "#d1242f"}
_AXIS = {"gridcolor": "#eaeef2", "zerolinecolor": "#d0d7de", "linecolor": "#d0d7de"}


def human_vs_automatic(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per item: the automatic confidence (x) against the mean human rating (y), one trace per
    method (the layout follows backend/figures.py: template "none", explicit styles)."""
    traces = []
    for method, label in _LABELS.items():
        rows = [r for r in items if r["method"] == method and r["human_mean"] is not None]
        rows = [r for r in rows if r["confidence"] is not None]
        if rows:
            traces.append(
                go.Scatter(
                    x=[r["confidence"] for r in rows], y=[r["human_mean"] for r in rows],
                    mode="markers", name=label, marker={"color": _COLORS[method], "size": 8},
                    text=[f"#{r['latent_idx']} {r['text']}" for r in rows],
                    hovertemplate="%{text}<br>confidence %{x:.2f}<br>human %{y:.2f}<extra></extra>",
                )
            )  # fmt: skip
    if not traces:
        return None
    layout = {
        "template": "none", "height": 320, "margin": {"l": 55, "r": 15, "t": 10, "b": 45},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "xaxis": {**_AXIS, "title": {"text": "automatic confidence"}},
        "yaxis": {**_AXIS, "title": {"text": "mean human rating (1–4)"}, "range": [0.8, 4.2]},
    }  # fmt: skip
    figure: dict[str, Any] = go.Figure(traces, layout).to_plotly_json()
    return figure


@page(
    router, "/studies/{study_id}/results", "study_results.html", name="study_results",
    responses=responses(403, 404),
)  # fmt: skip
def results_page(study: StudyDep, _admin: AdminDep, session: SessionDep) -> Context:
    """A study's results (admins): relevance per method, agreement, human vs automatic."""
    res = study_reads.results(session, study)
    return {
        "study": study_row(study),
        **res,
        "labels": _LABELS,
        "figures": {"human_vs_automatic": human_vs_automatic(res["items"])},
        "links": {"csv": study_url(study.id, "/results.csv"), "study": study_url(study.id)},
    }


CSV_FIELDS = [
    "study_id", "run_id", "annotator", "position", "latent_idx", "concept_id", "method",
    "concept", "confidence", "null_p95", "null_p", "null_n", "verdict", "rating", "skip_reason",
    "updated_at",
]  # fmt: skip


# A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"): text that does is written with a leading ' so it stays text. Numbers are left as
# they are (a negative confidence is a number, not a formula).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell no spreadsheet evaluates."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@router.get(
    "/studies/{study_id}/results.csv",
    summary="A study's ratings as CSV, one row per rating (admin)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **responses(403, 404)},
)
def results_csv(study: StudyDep, _admin: AdminDep, session: SessionDep) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for row in study_reads.export_rows(session, study):
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="study-{study.id}.csv"'},
    )
