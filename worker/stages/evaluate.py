"""evaluate: the paper's report (docs/method.md §1.9): Tables 3, 4, 6, 7, 8 and Figures 2, 5."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from core.jsonsafe import jsonable
from core.reports import PaperReport, details_null_p, is_verified
from core.rundir import OUTPUT_CHECK, REPORT, TUNING
from core.store.writes import NAMES_NOTHING
from core.text import analyze, item_token_sets
from worker.artifacts import save_tuning
from worker.cases import EVALUATION, TRAIN, case_roles, case_sets_report
from worker.data.readers import NO_GENRES
from worker.interpret.output_check import OutputCheckConfig, output_check, summary
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


def evaluation_users(run: Run) -> np.ndarray:
    """[U] one case per evaluation user: their longest evaluation case (the test position of a
    sequential model; a one-vector model has one case per user), in user order."""
    cases = run.probe.cases
    ev = np.flatnonzero(evaluation_mask(run))
    order = ev[np.lexsort((-cases.length[ev], cases.user[ev]))]  # by user, longest first
    _, first = np.unique(cases.user[order], return_index=True)
    return order[first]


def _output_checks(
    run: Run, item_tokens: list[frozenset[str]], verified: dict[str, dict[int, str]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The output check of every concept (docs/method.md §1.9, "Output check"): the SAE's
    TF-IDF and LLM concepts in replace mode (x̂ = W_dec z + b_dec), the Base's TF-IDF concepts on
    the model's own vector x (a dimension's unit is its TRAIN standard deviation, the scale its
    activation is measured in, docs/method.md §1.9 "Base"). Returns (per-latent records by
    representation and method, the report's summary)."""
    start = time.perf_counter()
    dataset, probe = run.dataset, run.probe
    cases = probe.cases
    users = evaluation_users(run)
    known = [
        dataset.sequences[u][:n]
        for u, n in zip(cases.user[users], cases.length[users], strict=True)
    ]
    config = OutputCheckConfig(seed=run.config.seed)
    emb = probe.item_emb

    def check(
        name: str, vectors: np.ndarray, directions: np.ndarray, concepts: dict[int, str]
    ) -> dict[int, dict[str, Any]]:
        idx, val = _codes(run, name)
        mean = run.interpretation.part(name).statistics.mean_activation
        return output_check(
            vectors, idx[users], val[users], directions, mean, emb, known, concepts, item_tokens,
            config,
        )  # fmt: skip

    W_dec = run.sae.W_dec.detach().numpy().astype(np.float64)
    b_dec = run.sae.b_dec.detach().numpy().astype(np.float64)
    idx, val = _codes(run, "sae")
    x_hat = np.einsum("uk,ukd->ud", val[users].astype(np.float64), W_dec[idx[users]]) + b_dec
    texts = {
        name: {c.latent: c.text for c in run.interpretation.part(name).concepts if c.text}
        for name in PARTS
    }
    llm = {
        c.latent_id: c.text for c in run.llm_concepts if c.text and c.status not in NAMES_NOTHING
    }
    reps = probe.reps
    std = reps[cases.side == TRAIN].astype(np.float64).std(axis=0)
    checks = {
        "sae": {
            "tfidf": check("sae", x_hat, W_dec, texts["sae"]),
            "llm": check("sae", x_hat, W_dec, llm),
        },
        "base": {
            "tfidf": check("base", reps[users], np.diag(np.where(std > 0, std, 1.0)), texts["base"])
        },
    }
    llm_verified = [
        c.latent_id for c in run.llm_concepts
        if c.text and is_verified(c.confidence, details_null_p(c.details))
    ]  # fmt: skip
    report = {
        "sae": summary(checks["sae"]["tfidf"], sorted(verified["sae"])),
        "base": summary(checks["base"]["tfidf"], sorted(verified["base"])),
        "llm": summary(checks["sae"]["llm"], llm_verified),
        "n_users": len(users),
        "scale": config.scale,
        "min_users": config.min_users,
        "seconds": time.perf_counter() - start,
    }
    return checks, report


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
    checks, report["output_check"] = _output_checks(run, item_tokens, verified_concepts)
    run.write_json(OUTPUT_CHECK, jsonable(checks))
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
    oc = report["output_check"]
    run.log(
        f"  output check ({oc['seconds']:.1f} s, {oc['n_users']} evaluation users): verified "
        f"TF-IDF concepts confirmed on output: SAE {oc['sae']['verified_confirmed']} of "
        f"{oc['sae']['verified']}, Base {oc['base']['verified_confirmed']} of "
        f"{oc['base']['verified']}"
    )
    for method, parts in report["null"].items():
        null = parts["sae"]
        run.log(
            f"  {method}: {null['confident']} SAE latents with confidence >= 0.8, "
            f"{null['verified']} also reject their null (p <= 0.05, n >= 19; smallest null of a "
            f"verified concept {null['null_n_min']}, {null['with_test']} nulls of n >= 19)"
        )
