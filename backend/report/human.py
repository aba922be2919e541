"""The report's human-evaluation table (paper §5.4; docs/method.md §5): per closed study of the
run, the latents rated, annotators, mean relevance (1–4) overall and per method, and the
agreement figures, beside the paper's own (three experts, 100 latents with confidence >= 0.8)."""

from __future__ import annotations

from typing import Any

from backend.report.cells import Cell, Table, cell, table

COLUMNS = [
    "latents", "annotators", "mean rating", "TF-IDF mean", "LLM mean", "Cohen's κ (mean)",
    "Cohen's κ quadratic", "Fleiss' κ", "Krippendorff's α",
]  # fmt: skip
# Paper §5.4: 3 experts, 100 latents with confidence >= 0.8, on the same 1–4 scale.
PAPER = {"latents": 100, "annotators": 3, "mean": 3.89, "cohen": 0.3565, "fleiss": 0.3407}
NOT_REPORTED = "the paper does not report this"


def _row(r: dict[str, Any]) -> list[Cell]:
    undefined = "undefined or not enough ratings (see the study's results page)"
    means = r["mean_rating"]
    return [
        cell(r["latents"]),
        cell(r["annotators"]),
        cell(r["mean_rating_all"], why="no ratings"),
        cell(means.get("tfidf"), why="no TF-IDF concept in this study"),
        cell(means.get("llm"), why="no LLM concept in this study"),
        cell(r["cohen_unweighted"], why=undefined),
        cell(r["cohen_quadratic"], why=undefined),
        cell(r["fleiss"], why=undefined),
        cell(r["krippendorff_ordinal"], why=undefined),
    ]


def human_table(rows: list[dict[str, Any]]) -> Table:
    """``rows``: core.study_reads.human_evaluation_table (closed studies only)."""
    out = table(
        "Human evaluation: relevance on the 1–4 scale and agreement, per closed study",
        COLUMNS,
        [(f"{r['name']} (study {r['study_id']})", _row(r)) for r in rows],
        empty="no closed study of this run yet: admins run them at /studies",
    )
    paper_cells = [
        cell(PAPER["latents"]), cell(PAPER["annotators"]), cell(PAPER["mean"]),
        cell(None, why=NOT_REPORTED), cell(None, why=NOT_REPORTED), cell(PAPER["cohen"]),
        cell(None, why=NOT_REPORTED), cell(PAPER["fleiss"]), cell(None, why=NOT_REPORTED),
    ]  # fmt: skip
    out["paper"] = table("Paper §5.4 (three experts)", COLUMNS, [("RecSAE", paper_cells)])
    return out
