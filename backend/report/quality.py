"""The report's model-quality tables: ranking (paper Table 7), reconstruction, the sweep, and
the run's own numbers (dataset, recommender training, stage timings).

Each builder reads the typed report (:class:`core.reports.RunMetrics`) by attribute and, where
the paper has the same table, puts the paper's numbers (:mod:`backend.paper`) under ``paper``.
"""

from __future__ import annotations

from typing import Any

from backend import figures
from backend.numbers import words
from backend.report.cells import Cell, Kind, Table, cell, ci_cell, number, pair, ratio_cell, table
from backend.report.generic import is_scalar
from backend.report.summary import ranking
from core.reports import RunMetrics, SweepRow

# Table 7's rows, in the paper's order of interest; other keys the worker adds follow.
RANKING_ROWS = {
    "mostpop": "MostPop",
    "base": "Base model",
    "sae": "SAE (x → x̂)",
    "random_sae": "Random SAE",
    "ae": "Dense AE (8)",
}
RANKING_METRICS = ("ndcg@10", "hr@10", "ndcg@20", "hr@20")
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
SWEEP_COLUMNS: dict[str, Kind] = {
    "scale": "num",
    "k": "num",
    "n_latents": "num",
    "fvu_train": "num",
    "fvu_dev": "num",
    "fvu_test": "num",
    "pca_fvu_test": "num",
    "dead_fraction": "pct",
    "dead_fraction_test": "pct",
    "best_epoch": "num",
    "vectors_per_second": "num",
}


def _paper_table7(ref: dict[str, Any]) -> Table:
    values = ref["values"]
    rows = []
    if values:
        for key, label in (("base", "Base"), ("ae", "AE"), ("sae", "RecSAE")):
            v = values[key]
            cells = [
                cell(v["ndcg@10"]),
                ratio_cell(v["ndcg@10"], values["base"]["ndcg@10"], ""),
                cell(v["ndcg@20"]),
                ratio_cell(v["ndcg@20"], values["base"]["ndcg@20"], ""),
            ]
            rows.append((label, cells))
    paper = table(ref["source"], ["N@10", "% of base", "N@20", "% of base"], rows)
    paper["note"] = ref["note"]
    return paper


def table7(m: RunMetrics, ref: dict[str, Any]) -> Table:
    """Paper Table 7 (plus HR and MostPop): ranking with x replaced, 95% bootstrap CIs."""
    rows_in = ranking(m)
    base = rows_in.get("base") or {}
    order = [k for k in RANKING_ROWS if k in rows_in] + [
        k for k in rows_in if k not in RANKING_ROWS
    ]
    rows = []
    for key in order:
        entry = rows_in[key]
        cells = []
        for metric in RANKING_METRICS:
            cells.append(ci_cell(entry.get(metric), f"{key} has no {metric}"))
            if metric.startswith("ndcg"):
                ours, theirs = entry.get(metric), base.get(metric)
                cells.append(
                    ratio_cell(
                        ours.mean if ours else None,
                        theirs.mean if theirs else None,
                        "no base model score to compare with",
                    )
                )
        rows.append((RANKING_ROWS.get(key, key), cells))
    out = table(
        "Ranking with the representation replaced (test, full ranking, 95% bootstrap CI)",
        ["NDCG@10", "% of base", "HR@10", "NDCG@20", "% of base", "HR@20"],
        rows,
        empty="the worker has not evaluated the ranking yet",
    )
    out["paper"] = _paper_table7(ref)
    return out


def table7_paired(m: RunMetrics) -> Table:
    """Table 7 paired (docs/method.md §1.9): per reconstruction, NDCG@10(x̂) − NDCG@10(x) over
    the same users and the share of the base kept, each with a bootstrap CI that resamples users
    (seeded with the run's seed)."""
    rows = []
    why = "the worker did not compute the paired comparison (rerun train_sae)"
    for key, entry in (m.sae.ranking_paired or {}).items():
        diff, kept = entry.get("diff") or {}, entry.get("retained") or {}
        rows.append(
            (
                RANKING_ROWS.get(key, key),
                [
                    cell(entry.get("n"), why=why),
                    cell(diff.get("mean"), why=why, lo=diff.get("lo"), hi=diff.get("hi")),
                    cell(kept.get("mean"), why=why, lo=kept.get("lo"), hi=kept.get("hi")),
                ],
            )
        )
    return table(
        "Table 7 paired: the same users with x and with x̂ (95% bootstrap CI over users)",
        ["users", "NDCG@10(x̂) − NDCG@10(x)", "share of base kept (x̂ ÷ x)"],
        rows,
        empty="the worker did not compute the paired comparison (rerun train_sae)",
    )


def table7_by_users(m: RunMetrics) -> Table:
    """Table 7's SAE row split by whether the user's vectors trained the SAE: the held-out
    users' figure is the honest one for one-vector models (docs/method.md §1.9)."""
    rows = []
    for split, label, entry_count in (
        ("heldout", "held-out users (SAE never saw them)", m.sae.n_heldout_users),
        ("trained", "users whose vectors trained the SAE", m.sae.n_trained_users),
    ):
        cis = m.sae.ranking_heldout if split == "heldout" else m.sae.ranking_trained
        base, sae = cis.get("base", {}), cis.get("sae", {})
        why = "the worker did not split Table 7 by users (rerun train_sae)"
        b, s = base.get("ndcg@10"), sae.get("ndcg@10")
        if entry_count == 0 and b is None and s is None:
            continue  # no such users (e.g. every user trained the SAE): no row of dashes
        cells = [
            cell(entry_count, why=why),
            ci_cell(b, why),
            ci_cell(s, why),
            ratio_cell(s.mean if s else None, b.mean if b else None, why),
        ]
        rows.append((label, cells))
    return table(
        "Table 7's NDCG@10 by users: held out from the SAE or trained on (95% bootstrap CI)",
        ["users", "base N@10", "SAE N@10", "% of base"],
        rows,
    )


def reconstruction(m: RunMetrics, k: int) -> list[Table]:
    """FVU of the SAE vs its baselines (docs/method.md §1.4: held-out FVU is the one that
    counts)."""
    sae, ae = m.sae, m.sae.ae
    held_out_only = "baselines are measured on held-out vectors only"
    pca_k = sae.config.get("k") or k
    not_held_out = [cell(None, why=held_out_only)] * 2
    rows = [
        ("SAE (trained)", [cell(sae.fvu_train), cell(sae.fvu_dev), cell(sae.fvu_test)]),
        (f"PCA-{pca_k}", [*not_held_out, cell(sae.pca_fvu_test)]),
        ("Random SAE", [*not_held_out, cell(sae.random_sae_fvu_test)]),
        ("Dense AE (8)", [cell(ae.fvu_train), cell(ae.fvu_dev), cell(sae.ae_fvu_test)]),
    ]
    fvu = table(
        "Fraction of variance unexplained (lower is better)",
        ["train", "dev", "test (held out)"],
        rows,
    )
    counts = (sae.n_train_vectors, sae.n_dev_vectors, sae.n_test_vectors)
    n_vec = "/".join(f"{n:,}" for n in counts if n is not None)
    details = table(
        "The SAE",
        ["value"],
        [
            ("latents", [cell(sae.n_latents)]),
            ("dead fraction (training set)", [cell(sae.dead_fraction, "pct")]),
            ("L0 (active latents per vector)", [cell(sae.l0)]),
            ("vectors / s (training)", [cell(sae.vectors_per_second)]),
            ("training seconds", [cell(sae.train_seconds)]),
            ("best epoch / epochs", [cell(pair(sae.best_epoch, sae.epochs), "text")]),
            ("AE best epoch / epochs", [cell(pair(ae.best_epoch, ae.epochs), "text")]),
            ("vectors train / dev / test", [cell(n_vec or None, "text")]),
        ],
    )
    return [fvu, details]


def _sweep_sort_key(row: SweepRow) -> tuple[int, int]:
    return (row.scale or 0, row.k or 0)


def sweep(m: RunMetrics) -> dict[str, Any] | None:
    """Paper Figures 7/8 from ``report.sweep`` (one row per (s, k)); None when not run."""
    rows = m.report.sweep or []
    if not rows:
        return None
    # The columns some row has a value for (as the worker wrote them), in SWEEP_COLUMNS order.
    columns = [c for c in SWEEP_COLUMNS if any(c in row.model_fields_set for row in rows)][1:]
    plain = [row.to_json() for row in rows]
    return {
        "table": table(
            "One SAE per (s, k), FVU on held-out vectors",
            columns,
            [
                (f"s = {row.scale}", [cell(getattr(row, c), SWEEP_COLUMNS[c]) for c in columns])
                for row in sorted(rows, key=_sweep_sort_key)
            ],
        ),
        "figures": {
            "fvu_scale": figures.sweep_lines(plain, "scale", "k", "fvu_test", "held-out FVU"),
            "fvu_k": figures.sweep_lines(plain, "k", "scale", "fvu_test", "held-out FVU"),
            "dead_scale": figures.sweep_lines(
                plain, "scale", "k", "dead_fraction", "dead fraction"
            ),
        },
    }


def dataset_table(m: RunMetrics) -> Table:
    """The preprocessing counts the worker published (docs/method.md §1.1)."""
    rows: list[tuple[str, list[Cell]]] = [
        (DATASET_LABELS.get(k, k), [cell(v, "num" if number(v) is not None else "text")])
        for k, v in m.dataset.items()
        if is_scalar(v)
    ]
    empty = "the worker has not published dataset statistics"
    return table("Dataset", ["value"], rows, empty=empty)


def recommender_table(m: RunMetrics) -> Table:
    """The recommender's training: epochs, time and its dev metrics."""
    rec = m.recommender
    rows = [
        ("best epoch / epochs run", [cell(pair(rec.best_epoch, rec.epochs_run), "text")]),
        ("training seconds", [cell(rec.train_seconds)]),
    ]
    for metric, value in rec.dev.items():
        rows.append((f"dev {metric}", [cell(value)]))
    return table("Recommender training", ["value"], rows)


def timings_table(m: RunMetrics) -> Table:
    """Seconds per stage and their total."""
    timings = {k: v for k, v in m.timings.items() if number(v) is not None}
    rows = [(words(stage), [cell(seconds, "seconds")]) for stage, seconds in timings.items()]
    if rows:
        total = sum(v for v in timings.values() if v is not None)
        rows.append(("total", [cell(total, "seconds")]))
    return table("Stage timings", ["time"], rows, empty="no timings published")
