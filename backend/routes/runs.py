"""Runs: the index of published runs and each run's report (the paper's tables and figures).

The report reads the shape the worker publishes (``worker/stages.py``): ``metrics.dataset``,
``.recommender``, ``.sae``, ``.report.{table3, table4, figure2, figure5, table6, table7, table8,
sweep}`` and ``.timings``. Each table is built here as plain data (``{"title", "columns",
"rows": [{"label", "cells"}]}``, a cell ``{"value", "kind", ["lo", "hi"], ["why"]}``) so the page
and its JSON twin carry the same numbers; a missing or null value keeps a ``why`` the page shows
as a tooltip. The paper's MovieLens-1M numbers for the same recommender sit beside ours
(:mod:`backend.paper`). Keys this module does not know are shown at the bottom by
:func:`metric_tables`, never dropped.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter

from backend import figures, paper, urls
from backend.deps import Context, RunDep, SessionDep, _finite, page
from core.store import reads
from core.store.schema import Run

router = APIRouter(tags=["runs"])

Scalar = int | float | str | bool | None
Cell = dict[str, Any]
Table = dict[str, Any]
_MAX_INLINE_LIST = 16
VERIFIED = 0.8  # paper §5: a concept is verified at confidence >= 0.8

# Table 7's rows, in the paper's order of interest; other keys the worker adds follow.
RANKING_ROWS = {
    "mostpop": "MostPop",
    "base": "Base model",
    "sae": "SAE (x → x̂)",
    "random_sae": "Random SAE",
    "ae": "Dense AE (8)",
}
RANKING_METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20")
TABLE8_SCALES = (-10, 1, 10)  # the paper's Decreased / Original / Increased
DATASET_LABELS = {
    "raw_interactions": "raw interactions",
    "positive_interactions": "positive interactions",
    "distinct_interactions": "distinct interactions",
    "kcore_rounds": "5-core rounds",
    "users": "users",
    "items": "items",
    "interactions": "interactions (after 5-core)",
    "train": "train",
    "dev": "dev",
    "test": "test",
    "items_without_metadata": "items without metadata",
}
# Paths of metrics the report shows (a bare top-level key: the whole section). What is not
# here goes to the generic tables at the bottom.
KNOWN = frozenset(
    {
        "dataset",
        "timings",
        *(
            f"recommender.{k}"
            for k in (
                "name",
                "epochs_run",
                "best_epoch",
                "dev",
                "test",
                "test_ci",
                "mostpop_test_ci",
                "train_seconds",
                "config",
            )
        ),
        *(
            f"sae.{k}"
            for k in (
                "fvu_train",
                "fvu_dev",
                "fvu_test",
                "pca_fvu_test",
                "random_sae_fvu_test",
                "ae_fvu_test",
                "ae.fvu_train",
                "ae.fvu_dev",
                "ae.best_epoch",
                "ae.epochs",
                "ae.train_seconds",
                "dead_fraction",
                "l0",
                "n_latents",
                "vectors_per_second",
                "train_seconds",
                "best_epoch",
                "epochs",
                "config",
                "ranking",
                "n_train_vectors",
                "n_dev_vectors",
                "n_test_vectors",
            )
        ),
        *(
            f"report.{k}"
            for k in ("table3", "table4", "figure2", "figure5", "table6", "table7", "table8")
        ),
        "report.sweep",
    }
)


# --- generic tables (any nesting) ------------------------------------------------------------


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


def leftover(data: dict[str, Any], known: frozenset[str] = KNOWN, prefix: str = "") -> dict:
    """``data`` without the paths in ``known`` (what the report does not show by itself)."""
    rest: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in known or (prefix == "report." and key.startswith("table4_")):
            continue
        if isinstance(value, dict) and any(p.startswith(f"{path}.") for p in known):
            inner = leftover(value, known, f"{path}.")
            if inner:
                rest[key] = inner
        else:
            rest[key] = value
    return rest


# --- cells ---------------------------------------------------------------------------------


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def cell(value: Any, kind: str = "num", why: str | None = None, **extra: Any) -> Cell:
    """A table cell; ``why`` (the tooltip of "—") is kept only when the value is missing."""
    if kind != "text":
        value = _number(value)
    out: Cell = {"value": value, "kind": kind, **{k: v for k, v in extra.items() if v is not None}}
    if value is None:
        out["why"] = why or "not in this run's metrics"
    return out


def _ci(entry: Any) -> tuple[float | None, float | None, float | None]:
    """(mean, lo, hi) from ``{"mean", "lo", "hi"}`` or a bare number."""
    if isinstance(entry, dict):
        return _number(entry.get("mean")), _number(entry.get("lo")), _number(entry.get("hi"))
    return _number(entry), None, None


def ci_cell(entry: Any, why: str) -> Cell:
    mean, lo, hi = _ci(entry)
    return cell(mean, why=why, lo=lo, hi=hi)


def ratio_cell(num: Any, den: Any, why: str) -> Cell:
    a, b = _number(num), _number(den)
    if a is None or not b:
        return cell(None, "pct", why)
    return cell(a / b, "pct")


def table(
    title: str, columns: list[str], rows: list[tuple[str, list[Cell]]], **extra: Any
) -> Table:
    return {
        "title": title,
        "columns": columns,
        "rows": [{"label": label, "cells": cells} for label, cells in rows],
        **extra,
    }


# --- the headline (index) ----------------------------------------------------------------------


def ranking(metrics: dict[str, Any]) -> dict[str, Any]:
    """Table 7's rows: the report's, else what the earlier stages published (same numbers)."""
    t7 = _dig(metrics, "report", "table7") or _dig(metrics, "sae", "ranking")
    if isinstance(t7, dict) and t7:
        return t7
    rec = metrics.get("recommender") or {}
    rows = {"mostpop": rec.get("mostpop_test_ci"), "base": rec.get("test_ci") or rec.get("test")}
    return {k: v for k, v in rows.items() if v}


def _llm_table4(report: dict[str, Any]) -> dict[str, Any]:
    """``table4_<method>`` blocks an extra concept method adds (e.g. ``table4_llm``)."""
    return {
        key.removeprefix("table4_"): value
        for key, value in report.items()
        if key.startswith("table4_") and isinstance(value, dict)
    }


def _pick_scales(scales: list[Any]) -> list[int]:
    """Indices of -10x / 1x / +10x in ``scales`` (those present, in that order)."""
    return [scales.index(s) for s in TABLE8_SCALES if s in scales]


def headline(run: Run) -> dict[str, Any]:
    """The numbers the run index shows (None where the worker has not written them)."""
    m = _finite(run.metrics or {})
    rows = ranking(m)
    base, base_lo, base_hi = _ci(_dig(rows, "base", "ndcg@10"))
    sae, _, _ = _ci(_dig(rows, "sae", "ndcg@10"))
    mostpop, _, _ = _ci(_dig(rows, "mostpop", "ndcg@10"))
    report = m.get("report") or {}
    methods = {"tfidf": report.get("table4"), **_llm_table4(report)}
    concepts = {
        method: {
            "latents": _dig(t4, "sae", "latents_verified"),
            "concepts": _dig(t4, "sae", "concepts_verified"),
        }
        for method, t4 in methods.items()
        if isinstance(t4, dict) and isinstance(t4.get("sae"), dict)
    }
    t8 = report.get("table8") or {}
    tuning = None
    if t8.get("scales") and t8.get("related"):
        picked = _pick_scales(t8["scales"])
        tuning = {
            "scales": [t8["scales"][i] for i in picked],
            "related": [t8["related"][i] for i in picked],
            "other": [t8["other"][i] for i in picked] if t8.get("other") else [],
        }
    return {
        "base_ndcg@10": base,
        "base_ndcg@10_ci": [base_lo, base_hi] if base_lo is not None else None,
        "sae_ndcg@10": sae,
        "sae_retained": sae / base if sae is not None and base else None,
        "mostpop_ndcg@10": mostpop,
        "fvu_test": _number(_dig(m, "sae", "fvu_test")),
        "pca_fvu_test": _number(_dig(m, "sae", "pca_fvu_test")),
        "dead_fraction": _number(_dig(m, "sae", "dead_fraction")),
        "concepts": concepts,
        "table8": tuning,
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
        "steer_url": urls.user(run.id, 0) if run.n_users else None,  # a first user to steer
    }


@page(router, "/", "runs.html", name="runs")
def runs_index(session: SessionDep) -> Context:
    """Published runs with their headline metrics."""
    return {"runs": [{**run_summary(r), "headline": headline(r)} for r in reads.list_runs(session)]}


# --- the report's tables -------------------------------------------------------------------


def table7(m: dict[str, Any], ref: dict[str, Any]) -> Table:
    """Paper Table 7 (plus HR and MostPop): ranking with x replaced, 95% bootstrap CIs."""
    rows_in = ranking(m)
    base = rows_in.get("base") or {}
    order = [k for k in RANKING_ROWS if k in rows_in] + [
        k for k in rows_in if k not in RANKING_ROWS
    ]
    rows = []
    for key in order:
        entry = rows_in[key] or {}
        cells = []
        for metric in RANKING_METRICS:
            cells.append(ci_cell(entry.get(metric), f"{key} has no {metric}"))
            if metric.startswith("ndcg"):
                cells.append(
                    ratio_cell(
                        _ci(entry.get(metric))[0],
                        _ci(base.get(metric))[0],
                        "no base model score to compare with",
                    )
                )
        rows.append((RANKING_ROWS.get(key, key), cells))
    ours = table(
        "Ranking with the representation replaced (test, full ranking, 95% bootstrap CI)",
        ["NDCG@10", "% of base", "HR@10", "NDCG@20", "% of base", "HR@20"],
        rows,
        empty="the worker has not evaluated the ranking yet",
    )
    values = ref["values"]
    paper_rows = []
    if values:
        for key, label in (("base", "Base"), ("ae", "AE"), ("sae", "RecSAE")):
            v = values[key]
            paper_rows.append(
                (
                    label,
                    [
                        cell(v["ndcg@10"]),
                        ratio_cell(v["ndcg@10"], values["base"]["ndcg@10"], ""),
                        cell(v["ndcg@20"]),
                        ratio_cell(v["ndcg@20"], values["base"]["ndcg@20"], ""),
                    ],
                )
            )
    ours["paper"] = table(
        ref["source"], ["N@10", "% of base", "N@20", "% of base"], paper_rows, note=ref["note"]
    )
    return ours


def reconstruction(m: dict[str, Any], k: int) -> list[Table]:
    """FVU of the SAE vs its baselines (SPEC §1.4: held-out FVU is the one that counts)."""
    sae = m.get("sae") or {}
    ae = sae.get("ae") or {}
    held_out_only = "baselines are measured on held-out vectors only"
    pca_k = _dig(sae, "config", "k") or k
    rows = [
        ("SAE (trained)", [cell(sae.get(f"fvu_{s}")) for s in ("train", "dev", "test")]),
        (
            f"PCA-{pca_k}",
            [cell(None, why=held_out_only)] * 2 + [cell(sae.get("pca_fvu_test"))],
        ),
        (
            "Random SAE",
            [cell(None, why=held_out_only)] * 2 + [cell(sae.get("random_sae_fvu_test"))],
        ),
        (
            "Dense AE (8)",
            [cell(ae.get("fvu_train")), cell(ae.get("fvu_dev")), cell(sae.get("ae_fvu_test"))],
        ),
    ]
    fvu = table(
        "Fraction of variance unexplained (lower is better)",
        ["train", "dev", "test (held out)"],
        rows,
    )
    n_vec = "/".join(
        f"{sae[f'n_{s}_vectors']:,}" for s in ("train", "dev", "test") if f"n_{s}_vectors" in sae
    )
    details = table(
        "The SAE",
        ["value"],
        [
            ("latents", [cell(sae.get("n_latents"))]),
            ("dead fraction (training set)", [cell(sae.get("dead_fraction"), "pct")]),
            ("L0 (active latents per vector)", [cell(sae.get("l0"))]),
            ("vectors / s (training)", [cell(sae.get("vectors_per_second"))]),
            ("training seconds", [cell(sae.get("train_seconds"))]),
            (
                "best epoch / epochs",
                [cell(_pair(sae.get("best_epoch"), sae.get("epochs")), "text")],
            ),
            (
                "AE best epoch / epochs",
                [cell(_pair(ae.get("best_epoch"), ae.get("epochs")), "text")],
            ),
            ("vectors train / dev / test", [cell(n_vec or None, "text")]),
        ],
    )
    return [fvu, details]


def _pair(a: Any, b: Any) -> str | None:
    return (
        None
        if a is None and b is None
        else f"{'—' if a is None else a} / {'—' if b is None else b}"
    )


def table3(report: dict[str, Any], ref: dict[str, Any]) -> Table:
    """Paper Table 3: intra-/inter-latent similarity of verified latents, SAE vs Base."""
    t3 = report.get("table3") or {}
    rows = []
    for key, label in (("sae", "SAE"), ("base", "Base")):
        part = t3.get(key) or {}
        n = _number(part.get("n_latents"))
        unit = "latent" if key == "sae" else "dimension"
        none_verified = f"no {label} {unit} has confidence ≥ {VERIFIED}"
        inter_why = none_verified if not n else "needs two verified latents"
        rows.append(
            (
                label,
                [
                    cell(part.get("intra"), why=none_verified if not n else "not computed"),
                    cell(part.get("inter"), why=inter_why if (n or 0) < 2 else "not computed"),
                    cell(n),
                ],
            )
        )
    ours = table(
        f"Similarity of the top items of latents with confidence ≥ {VERIFIED}",
        ["intra ↑", "inter ↓", "verified latents"],
        rows if t3 else [],
        empty="the worker has not computed Table 3",
    )
    values = ref["values"]
    ours["paper"] = table(
        ref["source"],
        ["intra ↑", "inter ↓"],
        [
            (label, [cell(values[key]["intra"]), cell(values[key]["inter"])])
            for key, label in (("base", "Base"), ("sae", "RecSAE"))
        ]
        if values
        else [],
        note=ref["note"],
    )
    return ours


def table4(report: dict[str, Any], ref: dict[str, Any]) -> Table:
    """Paper Table 4: latents and unique concepts with confidence >= 0.8 vs all, per method."""
    methods = {
        "TF-IDF": report.get("table4"),
        **{name.upper(): t for name, t in _llm_table4(report).items()},
    }
    rows = []
    for method, t4 in methods.items():
        if not isinstance(t4, dict):
            continue
        for key, label in (("sae", "SAE"), ("base", "Base")):
            part = t4.get(key) or {}
            rows.append(
                (
                    f"{method} · {label}",
                    [
                        cell(part.get("latents_verified")),
                        cell(part.get("latents_all")),
                        cell(part.get("concepts_verified")),
                        cell(part.get("concepts_all")),
                    ],
                )
            )
    ours = table(
        f"Latents and unique concepts with confidence ≥ {VERIFIED} vs all",
        [f"latents ≥ {VERIFIED}", "latents", f"concepts ≥ {VERIFIED}", "concepts"],
        rows,
        empty="the worker has not interpreted the latents yet",
    )
    values = ref["values"]
    paper_rows = []
    if values:
        for method, name in (("tfidf", "TF-IDF"), ("llm", "LLM")):
            for key, label in (("sae", "RecSAE"), ("base", "Base")):
                v = values[method][key]
                paper_rows.append((f"{name} · {label}", [cell(v["verified"]), cell(v["all"])]))
    ours["paper"] = table(
        ref["source"],
        [f"P ≥ {VERIFIED}", "All"],
        paper_rows,
        note=ref["note"]
        or "the paper calls these unique concepts; its Base “All” (64) counts dimensions",
    )
    return ours


def table6(report: dict[str, Any], ref: dict[str, Any]) -> Table:
    """Paper Table 6: item features (genres, tags) named by a verified TF-IDF concept."""
    t6 = report.get("table6") or {}
    values = ref["values"] or {}
    paper_key = {("genres", "all"): "genres", ("tags", "all"): "tags_all"}
    paper_key[("tags", "single_term")] = "tags_single_term"
    rows, lists = [], []
    for feature, part in t6.items():
        if not isinstance(part, dict):
            continue
        for subset in ("all", "single_term"):
            sub = part.get(subset)
            if not isinstance(sub, dict):
                continue
            label = f"{feature} ({'single-term' if subset == 'single_term' else 'all'})"
            pv = values.get(paper_key.get((feature, subset), ""))
            paper_text = f"{pv['n_covered']} ({pv['coverage']:.0%})" if pv else None
            rows.append(
                (
                    label,
                    [
                        cell(sub.get("n_covered")),
                        cell(sub.get("n_features")),
                        cell(sub.get("coverage"), "pct"),
                        cell(paper_text, "text", "the paper does not report this"),
                    ],
                )
            )
            lists.append({"label": label, "items": list(sub.get("covered") or [])})
        if part.get("no_token"):
            lists.append(
                {
                    "label": f"{feature} with no token (cannot be matched)",
                    "items": list(part["no_token"]),
                }
            )
    return table(
        f"Item features named by a TF-IDF concept with confidence ≥ {VERIFIED}",
        ["covered", "features", "coverage", f"paper ({ref['model'] or '—'})"],
        rows,
        lists=lists,
        empty="the worker has not computed Table 6",
        note=ref["note"],
    )


def figure5(report: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Paper Figure 5 per representation: per-latent levels (ours) vs pooled (reference code)."""
    f5 = report.get("figure5") or {}
    out = {}
    for key in ("sae", "base"):
        series = {
            label: f5[f"{key}_{suffix}"]
            for suffix, label in (("levels", "per-latent levels"), ("pooled_levels", "pooled"))
            if isinstance(f5.get(f"{key}_{suffix}"), dict)
        }
        out[key] = figures.hit_ratio_by_level(series) if series else None
    globals_ = {
        label: _number((f5.get(f"sae_{suffix}") or {}).get("global"))
        for suffix, label in (("levels", "per-latent"), ("pooled_levels", "pooled"))
    }
    out["global"] = {
        "ours": globals_["per-latent"]
        if globals_["per-latent"] is not None
        else globals_["pooled"],
        "paper": ref["values"],
        "paper_source": ref["source"],
        "paper_note": ref["note"],
        "why": "no verified concept, so no hit ratio",
    }
    return out


def table8(report: dict[str, Any], ref: dict[str, Any]) -> Table:
    """Paper Table 8: presence ratio in the top 10 at -10x / 1x / +10x, related vs other."""
    t8 = report.get("table8") or {}
    scales = t8.get("scales") or []
    picked = _pick_scales(scales)
    why = "the worker ran no targeted tuning (no verified concept, or tuning off)"
    rows = []
    if picked and t8.get("related"):
        for key, label in (("related", "related concept"), ("other", "other concepts")):
            series = t8.get(key) or []
            rows.append(
                (
                    label,
                    [
                        cell(series[i] if i < len(series) else None, "pct", f"no {key} series")
                        for i in picked
                    ],
                )
            )
    ours = table(
        "Presence ratio of the concept in the top 10"
        + (f" (mean over {t8['n_latents']} latents)" if t8.get("n_latents") else ""),
        [f"{scales[i]:+g}×" if scales[i] != 1 else "1×" for i in picked]
        if picked
        else ["−10×", "1×", "+10×"],
        rows,
        empty=why,
        mode=t8.get("mode"),
    )
    values = ref["values"]
    ours["paper"] = table(
        ref["source"] + (f" ({ref['model']})" if ref["model"] else ""),
        ["−10×", "1×", "+10×"],
        [
            (label, [cell(v, "pct") for v in values[key]])
            for key, label in (("related", "related concept"), ("other", "other concepts"))
        ]
        if values
        else [],
        note=ref["note"],
    )
    return ours


SWEEP_COLUMNS = (
    ("scale", "num"),
    ("k", "num"),
    ("n_latents", "num"),
    ("fvu_train", "num"),
    ("fvu_dev", "num"),
    ("fvu_test", "num"),
    ("pca_fvu_test", "num"),
    ("dead_fraction", "pct"),
    ("dead_fraction_test", "pct"),
    ("best_epoch", "num"),
    ("vectors_per_second", "num"),
)


def sweep(report: dict[str, Any]) -> dict[str, Any] | None:
    """Paper Figures 7/8 from ``report.sweep`` (one row per (s, k)); None when not run."""
    rows = [r for r in report.get("sweep") or [] if isinstance(r, dict)]
    if not rows:
        return None
    columns = [c for c, _ in SWEEP_COLUMNS if any(c in r for r in rows)]
    kinds = dict(SWEEP_COLUMNS)
    return {
        "table": table(
            "One SAE per (s, k), FVU on held-out vectors",
            columns[1:],
            [
                (f"s = {r.get('scale')}", [cell(r.get(c), kinds[c]) for c in columns[1:]])
                for r in sorted(rows, key=lambda r: (r.get("scale", 0), r.get("k", 0)))
            ],
        ),
        "figures": {
            "fvu_scale": figures.sweep_lines(rows, "scale", "k", "fvu_test", "held-out FVU"),
            "fvu_k": figures.sweep_lines(rows, "k", "scale", "fvu_test", "held-out FVU"),
            "dead_scale": figures.sweep_lines(rows, "scale", "k", "dead_fraction", "dead fraction"),
        },
    }


def dataset_table(m: dict[str, Any]) -> Table:
    data = m.get("dataset") or {}
    return table(
        "Dataset",
        ["value"],
        [
            (DATASET_LABELS.get(k, k), [cell(v, "num" if _number(v) is not None else "text")])
            for k, v in data.items()
            if _is_scalar(v)
        ],  # fmt: skip
        empty="the worker has not published dataset statistics",
    )


def recommender_table(m: dict[str, Any]) -> Table:
    rec = m.get("recommender") or {}
    rows = [
        (
            "best epoch / epochs run",
            [cell(_pair(rec.get("best_epoch"), rec.get("epochs_run")), "text")],
        ),
        ("training seconds", [cell(rec.get("train_seconds"))]),
    ]
    for metric, value in (rec.get("dev") or {}).items():
        rows.append((f"dev {metric}", [cell(value)]))
    return table("Recommender training", ["value"], rows)


def timings_table(m: dict[str, Any]) -> Table:
    timings = {k: v for k, v in (m.get("timings") or {}).items() if _number(v) is not None}
    rows = [(stage, [cell(seconds)]) for stage, seconds in timings.items()]
    if rows:
        rows.append(("total", [cell(sum(timings.values()))]))
    return table("Stage timings", ["seconds"], rows, empty="no timings published")


def paper_note(run: Run, m: dict[str, Any], ref: dict[str, Any]) -> str:
    data = m.get("dataset") or {}
    size = ", ".join(
        f"{data[k]:,} {k}" for k in ("users", "items", "interactions") if _number(data.get(k))
    )
    ours = f"{run.dataset} ({size})" if size else run.dataset
    return (
        f"Paper numbers are the {paper.PAPER}'s on {ref['dataset']} ({ref['setting']}); this run "
        f"is on {ours}. The datasets differ: compare directions and ratios "
        "(SAE vs base, SAE vs Base), not absolute values."
    )


@page(router, "/runs/{run_id}", "run.html", name="run")
def run_report(run: RunDep, session: SessionDep) -> Context:
    """A run's report: the paper's tables and figures on this run, beside the paper's own."""
    m: dict[str, Any] = _finite(run.metrics or {})
    report = m.get("report") or {}
    ref = paper.for_recommender(run.recommender)
    rest = leftover(m)
    return {
        "run": {**run_summary(run), "headline": headline(run)},
        "paper": {"note": paper_note(run, m, ref), "known": ref["known"], "model": ref["model"]},
        "report": {
            "table7": table7(m, ref["table7"]),
            "reconstruction": reconstruction(m, run.k),
            "table3": table3(report, ref["table3"]),
            "table4": table4(report, ref["table4"]),
            "table6": table6(report, ref["table6"]),
            "figure5": figure5(report, ref["figure5"]),
            "table8": table8(report, ref["table8"]),
            "sweep": sweep(report),
            "dataset": dataset_table(m),
            "recommender": recommender_table(m),
            "timings": timings_table(m),
        },
        "figures": {
            "figure2": figures.confidence_bars(report.get("figure2") or {}),
            "confidence": figures.confidence_distribution(reads.confidence_values(session, run.id)),
            "table8": figures.tuning_curve(report.get("table8") or {}),
        },
        "sections": [
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
            for key, value in rest.items()
        ],
        "config": metric_tables(run.config or {}, "config")
        + metric_tables(_dig(m, "recommender", "config") or {}, "recommender config")
        + metric_tables(_dig(m, "sae", "config") or {}, "SAE config"),
    }
