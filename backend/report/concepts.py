"""The report's interpretability tables: paper Tables 3, 4, 6 and 8 and Figure 5.

Each builder reads the typed report (:class:`core.reports.PaperReport`) by attribute and puts the
paper's numbers for the same recommender (:mod:`backend.paper`) under ``paper``. Keys
``"sae"`` and ``"base"`` name the representation: the SAE's latents or the model's dimensions.
"""

from __future__ import annotations

from typing import Any

from backend import figures
from backend.report.cells import Cell, CoveredList, Table, cell, number, table
from backend.report.summary import pick_scales
from core.reports import VERIFIED_CONFIDENCE, CoverageSubset, PaperReport, Similarity

V = f"{VERIFIED_CONFIDENCE:g}"  # how the page writes the threshold ("0.8")
# docs/method.md §1.11: verified = confidence >= 0.8 and above the null's p95
VERIFIED = f"verified (confidence ≥ {V} and its null's rank p ≤ 0.05, n ≥ 19)"
REPRESENTATIONS = (("sae", "SAE"), ("base", "Base"))


def _similarity_row(key: str, label: str, part: Similarity) -> tuple[str, list[Cell]]:
    n = number(part.n_latents)
    unit = "latent" if key == "sae" else "dimension"
    none_verified = f"no {label} {unit} is verified (confidence ≥ {V}, null p ≤ 0.05)"
    inter_why = none_verified if not n else "needs two verified latents"
    return (
        label,
        [
            cell(part.intra, why=none_verified if not n else "not computed"),
            cell(part.inter, why=inter_why if (n or 0) < 2 else "not computed"),
            cell(n),
        ],
    )


def table3(report: PaperReport, ref: dict[str, Any]) -> Table:
    """Paper Table 3: intra-/inter-latent similarity of verified latents, SAE vs Base."""
    t3 = report.table3
    rows = [
        _similarity_row(key, label, t3.get(key) or Similarity()) for key, label in REPRESENTATIONS
    ]
    out = table(
        f"Similarity of the top items of {VERIFIED} latents",
        ["intra ↑", "inter ↓", "verified latents"],
        rows if t3 else [],
        empty="the worker has not computed Table 3",
    )
    values = ref["values"]
    paper_rows = (
        [
            (label, [cell(values[key]["intra"]), cell(values[key]["inter"])])
            for key, label in (("base", "Base"), ("sae", "RecSAE"))
        ]
        if values
        else []
    )
    out["paper"] = table(ref["source"], ["intra ↑", "inter ↓"], paper_rows)
    out["paper"]["note"] = ref["note"]
    return out


def table4(report: PaperReport, ref: dict[str, Any]) -> Table:
    """Paper Table 4: latents and unique concepts with confidence >= 0.8 vs all, per method."""
    methods = {"TF-IDF": report.table4, "LLM": report.table4_llm}
    rows = []
    for method, t4 in methods.items():
        if not t4:  # the method did not run (or the worker has not interpreted yet)
            continue
        for key, label in REPRESENTATIONS:
            part = t4.get(key)
            counts = (
                [part.latents_verified, part.latents_all, part.concepts_verified, part.concepts_all]
                if part
                else [None] * 4
            )
            rows.append((f"{method} · {label}", [cell(v) for v in counts]))
    out = table(
        f"Latents and unique concepts {VERIFIED} vs all",
        ["verified latents", "latents", "verified concepts", "concepts"],
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
    out["paper"] = table(ref["source"], [f"P ≥ {V}", "All"], paper_rows)
    out["paper"]["note"] = (
        ref["note"]
        or "the paper calls these unique concepts; its Base “All” (64) counts dimensions"
    )
    return out


_PAPER_TABLE6_KEY = {
    ("genres", "all"): "genres",
    ("tags", "all"): "tags_all",
    ("tags", "single_term"): "tags_single_term",
}


def _coverage_row(
    feature: str, subset: str, sub: CoverageSubset, paper_values: dict[str, Any]
) -> tuple[str, list[Cell]]:
    label = f"{feature} ({'single-term' if subset == 'single_term' else 'all'})"
    pv = paper_values.get(_PAPER_TABLE6_KEY.get((feature, subset), ""))
    paper_text = f"{pv['n_covered']} ({pv['coverage']:.0%})" if pv else None
    return (
        label,
        [
            cell(sub.n_covered),
            cell(sub.n_features),
            cell(sub.coverage, "pct"),
            cell(paper_text, "text", "the paper does not report this"),
        ],
    )


def table6(report: PaperReport, ref: dict[str, Any]) -> Table:
    """Paper Table 6: item features (genres, tags) named by a verified TF-IDF concept."""
    values = ref["values"] or {}
    rows: list[tuple[str, list[Cell]]] = []
    lists: list[CoveredList] = []
    for feature, part in report.table6.items():
        for subset, sub in (("all", part.all), ("single_term", part.single_term)):
            if sub is None:
                continue
            label, cells = _coverage_row(feature, subset, sub, values)
            rows.append((label, cells))
            lists.append({"label": label, "items": list(sub.covered)})
        if part.no_token:
            label = f"{feature} with no token (cannot be matched)"
            lists.append({"label": label, "items": list(part.no_token)})
    out = table(
        f"Item features named by a {VERIFIED} TF-IDF concept",
        ["covered", "features", "coverage", f"paper ({ref['model'] or '—'})"],
        rows,
        empty="the worker has not computed Table 6",
    )
    out["lists"] = lists
    out["note"] = ref["note"]
    return out


def figure5(report: PaperReport, ref: dict[str, Any]) -> dict[str, Any]:
    """Paper Figure 5 per representation: per-latent levels (ours) vs pooled (reference code)."""
    f5 = report.figure5
    out: dict[str, Any] = {}
    for key in ("sae", "base"):
        series = {
            label: f5[f"{key}_{suffix}"].to_json()
            for suffix, label in (("levels", "per-latent levels"), ("pooled_levels", "pooled"))
            if f"{key}_{suffix}" in f5
        }
        out[key] = figures.hit_ratio_by_level(series) if series else None
    per_latent, pooled = f5.get("sae_levels"), f5.get("sae_pooled_levels")
    ours = per_latent.global_rate if per_latent else None
    out["global"] = {
        "ours": ours if ours is not None else (pooled.global_rate if pooled else None),
        "paper": ref["values"],
        "paper_source": ref["source"],
        "paper_note": ref["note"],
        "why": "no verified concept, so no hit ratio",
    }
    return out


NULL_METHODS = (("tfidf", "TF-IDF"), ("llm", "LLM"))


def null_table(report: PaperReport) -> Table:
    """docs/method.md §1.11: per method and representation, latents with confidence >= 0.8 and
    how many are verified (their permutation null rejects: rank p <= 0.05, n >= 19 draws)."""
    rows = []
    for method, name in NULL_METHODS:
        parts = (report.null or {}).get(method) or {}
        for key, label in REPRESENTATIONS:
            part = parts.get(key)
            if part is None:
                continue
            why = "no latent has a confidence" if not part.with_confidence else "not computed"
            margin_why = "TF-IDF only" if method == "llm" else why
            rows.append(
                (
                    f"{name} · {label}",
                    [
                        cell(part.with_confidence),
                        cell(part.confident),
                        cell(part.verified),
                        cell(part.null_n_min, why="no verified concept"),
                        cell(part.null_p95_median, why=why),
                        cell(part.margin_median, why=margin_why),
                    ],
                )
            )
    return table(
        "Verified under the null: confidence ≥ 0.8, and the permutation null (other latents' "
        "concepts on the same cases, the same concept on other latents' cases) rejects at 5%: "
        "rank p-value (r + 1) / (n + 1) ≤ 0.05, which needs n ≥ 19 draws",
        [
            "with a confidence",
            f"confidence ≥ {V}",
            "verified (also null p ≤ 0.05)",
            "smallest null n of a verified concept",
            "null p95 (median)",
            "TF-IDF margin (median)",
        ],
        rows,
        empty="the worker computed no null (a run from before the null)",
    )


OUTPUT_PARTS = (("sae", "TF-IDF · SAE"), ("base", "TF-IDF · Base"), ("llm", "LLM · SAE"))


def output_table(report: PaperReport) -> Table:
    """docs/method.md §1.9, "Output check": per method and representation, the share of the
    verified concepts whose latent, steered at ±5× on the evaluation users, moves the concept's
    share in the top 10 both ways (paired 95% CIs excluding 0); then every checked concept."""
    oc = report.output_check
    rows = []
    for key, label in OUTPUT_PARTS:
        part = getattr(oc, key) if oc else None
        if part is None or not part.checked:
            continue
        rows.append(
            (
                label,
                [
                    cell(part.verified),
                    cell(part.verified_confirmed),
                    cell(part.confirmed_share, "pct", "no verified concept"),
                    cell(part.checked),
                    *(cell(part.verdicts.get(v)) for v in ("confirmed", "refuted", "too_few")),
                    cell(part.modes.get("inactive_set")),
                ],
            )
        )
    scale = f"{oc.scale:g}" if oc and oc.scale else "5"
    users = f" over {oc.n_users} evaluation users" if oc and oc.n_users else ""
    return table(
        f"Confirmed on output: boosting the latent ×{scale} raises its concept's share in the top "
        f"10 and ×−{scale} lowers it, both paired 95% CIs excluding 0 (replace mode{users}; "
        f"where fewer than {oc.min_users if oc and oc.min_users else 20} are active, every user "
        "with the latent set to the scale × its mean activation where inactive)",
        [
            "verified",
            "verified and confirmed",
            "share of verified confirmed",
            "checked (all concepts)",
            "confirmed",
            "refuted",
            "too few users",
            "checked on every user (inactive set)",
        ],
        rows,
        empty="not checked: the run was evaluated before the output check existed",
    )


# Table 8's series, the headline first: the share of the top 10 items carrying the concept
# (the paper's "ratio of items related to the concept"), then eq. 5's case-level presence,
# which saturates on broad concepts (docs/method.md §1.9).
TABLE8_SERIES = (
    ("related_share", "related concept · share of top-10 items"),
    ("other_share", "other concepts · share of top-10 items"),
    ("related", "related concept · cases with it in the top 10 (eq. 5)"),
    ("other", "other concepts · cases with it in the top 10 (eq. 5)"),
)


def table8(report: PaperReport, ref: dict[str, Any]) -> Table:
    """Paper Table 8 at -10x / 1x / +10x, related vs other: the item share first, then eq. 5."""
    t8 = report.table8
    scales = t8.scales if t8 else []
    picked = pick_scales(scales)
    rows = []
    if t8 and picked and t8.related:
        for key, label in TABLE8_SERIES:
            series: list[float | None] = getattr(t8, key)
            rows.append(
                (
                    label,
                    [
                        cell(series[i] if i < len(series) else None, "pct", f"no {key} series")
                        for i in picked
                    ],
                )
            )
    n_latents = f" (mean over {t8.n_latents} latents)" if t8 and t8.n_latents else ""
    out = table(
        "Items related to the concept in the top 10" + n_latents,
        [f"{scales[i]:+g}×" if scales[i] != 1 else "1×" for i in picked]
        if picked
        else ["−10×", "1×", "+10×"],
        rows,
        empty="the worker ran no targeted tuning (no verified concept, or tuning off)",
    )
    out["mode"] = t8.mode if t8 else None
    values = ref["values"]
    paper_rows = (
        [
            (label, [cell(v, "pct") for v in values[key]])
            for key, label in (("related", "related concept"), ("other", "other concepts"))
        ]
        if values
        else []
    )
    out["paper"] = table(
        ref["source"] + (f" ({ref['model']})" if ref["model"] else ""),
        ["−10×", "1×", "+10×"],
        paper_rows,
    )
    out["paper"]["note"] = ref["note"]
    return out
