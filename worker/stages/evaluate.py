"""evaluate: the paper's report (docs/method.md §1.9): Tables 3, 4, 6, 7, 8 and Figures 2, 5."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.jsonsafe import jsonable
from core.reports import PaperReport, details_null_p, is_verified
from core.rundir import REPORT, TUNING
from core.text import analyze, item_token_sets
from worker.artifacts import save_tuning
from worker.cases import EVALUATION, case_roles, case_sets_report
from worker.data.readers import NO_GENRES
from worker.interpret.result import PARTS
from worker.interpret.tfidf import descriptive_text
from worker.interpret.tuning import TuningConfig, targeted_tuning
from worker.metrics.interpretation import (
    concept_counts,
    confidence_histogram,
    feature_coverage,
    hit_ratio_by_level,
    null_summary,
    similarity_table,
    top_latent_items,
)
from worker.run import Run


def _codes(run: Run, name: str) -> tuple[np.ndarray, np.ndarray]:
    """[C, k] (idx, val) of representation ``name``: the SAE's recorded codes, or the Base's."""
    if name == "sae":
        return run.record.latent_idx, run.record.latent_val
    codes = run.interpretation.part(name).codes
    if codes is None:
        raise ValueError(f"the {name!r} interpretation was saved without its codes")
    return codes


def evaluation_mask(run: Run) -> np.ndarray:
    """[C] bool: the evaluation cases (``worker.cases.case_roles``): held-out cases of users
    whose cases neither built nor verified any concept (docs/method.md §1.7)."""
    probe = run.probe
    return case_roles(probe.cases, probe.sequential, run.config.seed) == EVALUATION


def _per_representation(
    run: Run, report: dict[str, Any], item_tokens: list[frozenset[str]]
) -> dict[str, dict[int, str]]:
    """Tables 3 and 4, Figures 2 and 5 and the null's effect for the SAE and the Base; returns
    their verified concepts ({latent: term} per representation). Verified: confidence >= 0.8
    and the null's rank p <= 0.05 with n >= 19, ``core.reports.is_verified`` (§1.11)."""
    item_emb = run.probe.item_emb
    top1 = run.record.top_items[:, 0]
    evaluation = evaluation_mask(run)  # docs/method.md §1.7: never a verifying user's case
    verified_concepts: dict[str, dict[int, str]] = {}
    for name in PARTS:
        idx, val = _codes(run, name)
        part = run.interpretation.part(name)
        conf = [c.confidence for c in part.concepts]
        null_p = [details_null_p(c.details) for c in part.concepts]
        texts = [c.text or None for c in part.concepts]
        items = top_latent_items(idx, val, top1, part.n_latents, n=5)
        report["table3"][name] = similarity_table(items, item_emb, conf, null_p=null_p)
        report["table4"][name] = concept_counts(texts, conf, null_p=null_p)
        report["figure2"][name] = confidence_histogram(conf)
        margins = [c.details.get("margin") for c in part.concepts]
        details = [c.details for c in part.concepts]
        report["null"]["tfidf"][name] = null_summary(conf, details, margins)
        verified_concepts[name] = {
            c.latent: c.text
            for c in part.concepts
            if c.text and is_verified(c.confidence, details_null_p(c.details))
        }
        for levels_name in ("levels", "pooled_levels"):
            report["figure5"][f"{name}_{levels_name}"] = hit_ratio_by_level(
                idx, getattr(part, levels_name), top1, verified_concepts[name], item_tokens,
                case_mask=evaluation,
            )  # fmt: skip
    return verified_concepts


def _tuning(
    run: Run, concepts: dict[int, str], item_tokens: list[frozenset[str]]
) -> dict[str, Any] | None:
    """Table 8 (paper §8) over the verified SAE concepts; writes the per-latent rows too.

    None when the run turned tuning off (no per-latent file) or nothing was verified (an empty
    per-latent file: the stage ran and had no latent to tune; a 5% null on a small run may
    verify none, docs/method.md §1.11).
    """
    if not (run.config.tuning and concepts):
        run.tuning = {}
        if run.config.tuning:
            save_tuning(run.dir, {})
        else:
            run.path(TUNING).unlink(missing_ok=True)
        return None
    dataset, probe, rec, sae = run.dataset, run.probe, run.record, run.sae
    cases = probe.cases
    test_mask = evaluation_mask(run)  # the evaluation users' held-out cases (§1.7)
    known = [dataset.sequences[u][:n] for u, n in zip(cases.user, cases.length, strict=True)]
    tuning = targeted_tuning(
        rec.latent_idx, rec.latent_val, sae.W_dec.detach().numpy(), sae.b_dec.detach().numpy(),
        probe.item_emb, known, concepts, item_tokens, case_mask=test_mask, x=probe.reps,
        config=TuningConfig(seed=run.config.seed),
    )  # fmt: skip
    save_tuning(run.dir, tuning.per_latent)
    run.tuning = tuning.per_latent
    return tuning.summary


def evaluate(run: Run) -> None:
    dataset = run.dataset
    # concepts are matched against what TF-IDF counted (docs/method.md §1.8)
    item_tokens = item_token_sets(descriptive_text(dataset, run.config.tfidf_title_words))
    report: dict[str, Any] = {
        "table3": {}, "table4": {}, "figure2": {}, "figure5": {}, "null": {"tfidf": {}}
    }  # fmt: skip
    verified_concepts = _per_representation(run, report, item_tokens)
    probe = run.probe
    report["case_sets"] = case_sets_report(
        probe.cases, case_roles(probe.cases, probe.sequential, run.config.seed)
    )  # the three sets' sizes and their shared users (0), docs/method.md §1.7

    llm = run.llm_concepts
    if llm:  # Table 4 for the LLM method, over the latents it explained
        conf = [c.confidence for c in llm]
        null_p = [details_null_p(c.details) for c in llm]
        report["table4_llm"] = {
            "sae": concept_counts([c.text or None for c in llm], conf, null_p=null_p)
        }
        report["figure2_llm"] = {"sae": confidence_histogram(conf)}
        report["null"]["llm"] = {"sae": null_summary(conf, [c.details for c in llm])}

    genres = [[g for g in gs if g != NO_GENRES] for gs in dataset.item_genres]
    terms = sorted(set(verified_concepts["sae"].values()))
    report["table6"] = {
        "genres": feature_coverage(genres, terms, analyze),
        "tags": feature_coverage(dataset.item_tags, terms, analyze),
    }
    report["table7"] = {
        name: {metric: ci.to_json() for metric, ci in cis.items()}
        for name, cis in run.sae_report().ranking.items()
    }
    table8 = _tuning(run, verified_concepts["sae"], item_tokens)
    if table8 is not None:
        report["table8"] = table8
    run.write_report(REPORT, PaperReport.model_validate(jsonable(report)))
    t3, t4 = report["table3"], report["table4"]
    run.log(
        f"  Table 3 intra {t3['base']['intra']:.3f} -> {t3['sae']['intra']:.3f}, inter "
        f"{t3['base']['inter']:.3f} -> {t3['sae']['inter']:.3f}; Table 4 verified "
        f"{t4['base']} -> {t4['sae']}"
    )
    for method, parts in report["null"].items():
        null = parts["sae"]
        run.log(
            f"  {method}: {null['confident']} SAE latents with confidence >= 0.8, "
            f"{null['verified']} also reject their null (p <= 0.05, n >= 19; smallest null of a "
            f"verified concept {null['null_n_min']}, {null['with_test']} nulls of n >= 19)"
        )
