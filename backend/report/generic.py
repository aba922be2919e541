"""What the report's own tables do not show, shown generically so nothing is ever dropped.

:func:`leftover` walks the typed :class:`core.reports.RunMetrics` and keeps (a) every key the
worker wrote that no model names yet (pydantic's ``model_extra``) and (b) every field a model
names but the report's tables do not show (:data:`SHOWN`). :func:`metric_tables` turns any
nested dict of numbers into tables for the bottom of the page and for the configs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from core import reports as r

_MAX_INLINE_LIST = 16

# Fields each record's own tables show (by attribute, see backend.report.quality/concepts);
# checked against the models at import, so a renamed field fails here, not silently on a page.
# A record type not listed shows none of its fields by itself: all of them go to the bottom.
SHOWN: dict[type[BaseModel], frozenset[str]] = {
    r.RunMetrics: frozenset({"dataset", "recommender", "sae", "report", "timings"}),
    r.RecommenderReport: frozenset(
        {
            "name",
            "epochs_run",
            "best_epoch",
            "dev",
            "test",
            "test_ci",
            "mostpop_test_ci",
            "train_seconds",
            "config",
        }
    ),
    r.SAEReport: frozenset(
        {
            "n_latents",
            "fvu_train",
            "fvu_dev",
            "fvu_test",
            "pca_fvu_test",
            "random_sae_fvu_test",
            "ae_fvu_test",
            "dead_fraction",
            "l0",
            "best_epoch",
            "epochs",
            "train_seconds",
            "vectors_per_second",
            "n_train_vectors",
            "n_dev_vectors",
            "n_test_vectors",
            "ae",
            "config",
            "ranking",
            "ranking_paired",
        }
    ),
    r.DenseAEReport: frozenset({"fvu_train", "fvu_dev", "best_epoch", "epochs", "train_seconds"}),
    r.PaperReport: frozenset(
        {
            "table3",
            "table4",
            "table4_llm",
            "figure2",
            "figure2_llm",
            "figure5",
            "table6",
            "table7",
            "table8",
            "sweep",
            "null",
            "output_check",
        }
    ),
    r.Interval: frozenset(r.Interval.model_fields),
    r.Similarity: frozenset(r.Similarity.model_fields),
    r.ConceptCounts: frozenset(r.ConceptCounts.model_fields),
    r.ConfidenceHistogram: frozenset(r.ConfidenceHistogram.model_fields),
    r.HitRatioByLevel: frozenset(r.HitRatioByLevel.model_fields),
    r.CoverageSubset: frozenset(r.CoverageSubset.model_fields),
    r.FeatureCoverage: frozenset(r.FeatureCoverage.model_fields),
    r.TuningSummary: frozenset(r.TuningSummary.model_fields),  # the curve plots every series
    r.SweepRow: frozenset(r.SweepRow.model_fields),
    r.NullSummary: frozenset(r.NullSummary.model_fields),
    r.OutputCheckReport: frozenset(r.OutputCheckReport.model_fields),
    r.OutputCheckSummary: frozenset(r.OutputCheckSummary.model_fields),
}
for _model, _names in SHOWN.items():
    _unknown = _names - set(_model.model_fields)
    if _unknown:
        raise TypeError(f"backend.report.generic.SHOWN: {_model.__name__} has no {_unknown}")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict | list) and not value)


def _extras(value: Any) -> Any:
    """What ``value`` holds that the report does not show: a nested dict, or None for nothing."""
    if isinstance(value, BaseModel):
        return leftover(value) or None
    if isinstance(value, dict):
        inner = {k: x for k, v in value.items() if (x := _extras(v)) is not None}
        return inner or None
    if isinstance(value, list):
        inner = {f"[{i}]": x for i, v in enumerate(value) if (x := _extras(v)) is not None}
        return inner or None
    return None


def leftover(record: BaseModel) -> dict[str, Any]:
    """``record``'s keys the report does not show, as plain JSON (nested like the input).

    A field counts only when the worker wrote it (``model_fields_set``) with a value: None
    ("not computed") and empty containers are no number. Shown fields are searched for unknown
    keys deeper down.
    """
    shown = SHOWN.get(type(record), frozenset())
    rest: dict[str, Any] = {}
    for name in type(record).model_fields:  # declared order; extras come last
        value = getattr(record, name)
        if name not in record.model_fields_set or _is_empty(value):
            continue
        if name in shown:
            inner = _extras(value)
            if inner is not None:
                rest[name] = inner
        else:  # the field as JSON, under the key the worker wrote
            rest.update(record.model_dump(mode="json", by_alias=True, include={name}))
    rest.update(record.model_extra or {})
    return rest


def is_scalar(value: object) -> bool:
    """A table cell: a number, text, or a short list of numbers/text (e.g. bootstrap CIs)."""
    if value is None or isinstance(value, int | float | str | bool):
        return True
    return (
        isinstance(value, list)
        and len(value) <= _MAX_INLINE_LIST
        and all(v is None or isinstance(v, int | float | str | bool) for v in value)
    )


def metric_tables(data: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """Turn any nested dict of numbers into tables, whatever keys the worker wrote.

    A dict's scalar entries become one two-column table; two or more sibling dicts that hold
    only scalars become one matrix (rows = the siblings, columns = the union of their keys: e.g.
    ``recommender`` → mostpop / base / sae × ndcg@10 / hr@10); deeper dicts recurse with their
    path as title. Long lists (per-epoch series, histograms' ``edges``/``counts``) are no table
    cell: the page counts them (:func:`series_count`) and the JSON twin holds them.
    Returns ``[{"title", "columns", "rows": [[label, cell...]]}]``.
    """
    tables: list[dict[str, Any]] = []
    scalars = [[k, v] for k, v in data.items() if is_scalar(v)]
    if scalars:
        tables.append({"title": title, "columns": ["", "value"], "rows": scalars})
    children = {k: v for k, v in data.items() if isinstance(v, dict)}
    flat = {k: v for k, v in children.items() if v and all(is_scalar(x) for x in v.values())}
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


def series_count(data: Any) -> int:
    """How many long lists :func:`metric_tables` leaves to the JSON twin, at any depth."""
    if isinstance(data, dict):
        return sum(series_count(v) for v in data.values())
    return int(isinstance(data, list) and not is_scalar(data))


def sections(rest: dict[str, Any]) -> list[dict[str, Any]]:
    """The bottom of the page: one section of tables per top-level key of :func:`leftover`."""
    out = []
    for key, value in rest.items():
        if isinstance(value, dict):
            tables = metric_tables(value, key)
            if tables:
                out.append({"name": key, "tables": tables})
        elif not is_scalar(value):
            continue  # a long list: counted by series_count, in the JSON twin
        else:
            row = [key, value]
            out.append(
                {"name": key, "tables": [{"title": key, "columns": ["", "value"], "rows": [row]}]}
            )
    return out
