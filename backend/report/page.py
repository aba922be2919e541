"""The run report's context (the page and its JSON twin): every table, figure and leftover."""

from __future__ import annotations

from typing import Any

from backend import figures, paper
from backend.report import concepts, quality
from backend.report.cells import number
from backend.report.generic import leftover, metric_tables, sections, series_count
from backend.report.summary import headline, run_summary
from core.reports import RunMetrics
from core.store.schema import Run


def paper_note(run: Run, m: RunMetrics, ref: dict[str, Any]) -> str:
    """Which dataset the paper's numbers are on, and which this run is on."""
    data = m.dataset
    size = ", ".join(
        f"{data[k]:,} {k}" for k in ("users", "items", "interactions") if number(data.get(k))
    )
    ours = f"{run.dataset} ({size})" if size else run.dataset
    return (
        f"Paper numbers are the {paper.PAPER}'s on {ref['dataset']} ({ref['setting']}); this run "
        f"is on {ours}. The datasets differ: compare directions and ratios "
        "(SAE vs base, SAE vs Base), not absolute values."
    )


def _config_shown(config: dict[str, Any]) -> dict[str, Any]:
    """The run's configuration as a reader needs it: no filesystem paths (where the worker read
    its files is no property of the run), and ``sae_scale`` 0 in words (docs/method.md: the
    worker then chooses s itself; the SAE config below shows the s it chose)."""
    shown = {k: v for k, v in config.items() if not k.endswith(("_path", "_dir"))}
    if shown.get("sae_scale") == 0:
        shown["sae_scale"] = "chosen by the worker (see SAE config: scale)"
    return shown


def report_context(run: Run, m: RunMetrics, confidences: dict[str, list[float]]) -> dict[str, Any]:
    """The run report: the paper's tables and figures on this run, beside the paper's own.

    ``confidences``: each latent's best confidence per method (``reads.confidence_values``).
    """
    report = m.report
    rest = leftover(m)
    ref = paper.for_recommender(run.recommender)
    return {
        "run": {**run_summary(run), "headline": headline(run, m)},
        "paper": {"note": paper_note(run, m, ref), "known": ref["known"], "model": ref["model"]},
        "report": {
            "table7": quality.table7(m, ref["table7"]),
            "table7_users": quality.table7_by_users(m),
            "table7_paired": quality.table7_paired(m),
            "reconstruction": quality.reconstruction(m, run.k),
            "table3": concepts.table3(report, ref["table3"]),
            "table4": concepts.table4(report, ref["table4"]),
            "null": concepts.null_table(report),
            "output": concepts.output_table(report),
            "table6": concepts.table6(report, ref["table6"]),
            "figure5": concepts.figure5(report, ref["figure5"]),
            "table8": concepts.table8(report, ref["table8"]),
            "sweep": quality.sweep(m),
            "dataset": quality.dataset_table(m),
            "recommender": quality.recommender_table(m),
            "timings": quality.timings_table(m),
        },
        "figures": {
            "figure2": figures.confidence_bars({k: v.to_json() for k, v in report.figure2.items()}),
            "confidence": figures.confidence_distribution(confidences),
            "figure2_llm": figures.confidence_bars(
                {k: v.to_json() for k, v in (report.figure2_llm or {}).items()}
            ),
            "table8": figures.tuning_curve(report.table8.to_json() if report.table8 else {}),
        },
        "sections": sections(rest),
        "series": series_count(rest),
        "config": metric_tables(_config_shown(run.config or {}), "config")
        + metric_tables(m.recommender.config, "recommender config")
        + metric_tables(m.sae.config, "SAE config"),
    }
