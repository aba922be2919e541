"""What every page says about its run, and the headline numbers the run index shows.

Not a route module: the runs, items and latents routes all import :func:`run_summary` from here.
The numbers are read from the typed report (:class:`core.reports.RunMetrics`) by attribute.
"""

from __future__ import annotations

from typing import Any

from backend import urls
from backend.report.cells import number
from core.reports import ConceptCounts, Interval, RankingCI, RunMetrics
from core.store.schema import Run

TABLE8_SCALES = (-10, 1, 10)  # the paper's Decreased / Original / Increased


def load_metrics(run: Run) -> RunMetrics:
    """The run's ``metrics`` column as the typed report; NaN/inf anywhere become None."""
    return RunMetrics.from_column(run.metrics)


def ranking(m: RunMetrics) -> dict[str, RankingCI]:
    """Table 7's rows: the report's, else what the earlier stages published (same numbers)."""
    rows = m.report.table7 or m.sae.ranking
    if rows:
        return rows
    rec = m.recommender
    base = rec.test_ci or {metric: Interval(mean=v) for metric, v in rec.test.items()}
    fallback = {"mostpop": rec.mostpop_test_ci, "base": base}
    return {k: v for k, v in fallback.items() if v}


def concept_methods(m: RunMetrics) -> dict[str, dict[str, ConceptCounts]]:
    """Table 4 per concept method that ran: ``tfidf`` always, ``llm`` when asked for."""
    methods = {"tfidf": m.report.table4, "llm": m.report.table4_llm}
    return {name: t4 for name, t4 in methods.items() if t4 is not None}


def pick_scales(scales: list[float]) -> list[int]:
    """Indices of -10x / 1x / +10x in ``scales`` (those present, in that order)."""
    return [scales.index(s) for s in TABLE8_SCALES if s in scales]


def _mean(row: RankingCI | None, metric: str) -> Interval:
    return (row or {}).get(metric) or Interval()


def _tuning_headline(m: RunMetrics) -> dict[str, list[Any]] | None:
    """Table 8 at the paper's three scales, None when the worker ran no targeted tuning."""
    t8 = m.report.table8
    if t8 is None or not t8.scales or not t8.related:
        return None
    picked = pick_scales(t8.scales)
    out: dict[str, list[Any]] = {
        "scales": [t8.scales[i] for i in picked],
        "related": [t8.related[i] for i in picked],
        "other": [t8.other[i] for i in picked] if t8.other else [],
    }
    # the headline (docs/method.md §1.9): the share of the top-10 items carrying the concept
    if t8.related_share:
        out["related_share"] = [t8.related_share[i] for i in picked]
        out["other_share"] = [t8.other_share[i] for i in picked] if t8.other_share else []
    return out


def headline(run: Run, m: RunMetrics | None = None) -> dict[str, Any]:
    """The numbers the run index shows (None where the worker has not written them)."""
    m = m or load_metrics(run)
    rows = ranking(m)
    base = _mean(rows.get("base"), "ndcg@10")
    sae = number(_mean(rows.get("sae"), "ndcg@10").mean)
    base_mean = number(base.mean)
    return {
        "base_ndcg@10": base_mean,
        "base_ndcg@10_ci": [base.lo, base.hi] if number(base.lo) is not None else None,
        "sae_ndcg@10": sae,
        "sae_retained": sae / base_mean if sae is not None and base_mean else None,
        "sae_retained_heldout": number(m.sae.retained("heldout")),
        "sae_retained_trained": number(m.sae.retained("trained")),
        "mostpop_ndcg@10": number(_mean(rows.get("mostpop"), "ndcg@10").mean),
        "fvu_test": number(m.sae.fvu_test),
        "pca_fvu_test": number(m.sae.pca_fvu_test),
        "dead_fraction": number(m.sae.dead_fraction),
        "concepts": {
            method: {"latents": t4["sae"].latents_verified, "concepts": t4["sae"].concepts_verified}
            for method, t4 in concept_methods(m).items()
            if "sae" in t4
        },
        "table8": _tuning_headline(m),
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
        # a model trained elsewhere (docs/import.md): its description and the ranking check
        "imported": ((run.metrics or {}).get("recommender") or {}).get("imported"),
    }
