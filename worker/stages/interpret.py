"""interpret (docs/method.md §1.6–1.8): levels, examples, TF-IDF concepts and statistics of every
latent, for the SAE's codes and for the Base dimensions (paper §4.3), plus the decoder's item
effects."""

from __future__ import annotations

import numpy as np

from core.reports import details_null_p, is_verified
from worker.cases import CONSTRUCTION, DEV, TEST, TRAIN, VERIFICATION, Cases, case_roles
from worker.data.dataset import Dataset
from worker.interpret.baseline import base_latents
from worker.interpret.examples import select_examples
from worker.interpret.levels import assign_levels, fit_level_edges
from worker.interpret.result import CodesInterpretation, Interpretation
from worker.interpret.statistics import decoder_item_effects, latent_statistics
from worker.interpret.tfidf import TfidfConfig, descriptive_text, not_concepts, tfidf_concepts
from worker.run import Run


def verification_pool(cases: Cases, role: np.ndarray | None = None) -> Cases:
    """The cases as example selection sees them (``select_examples``): TRAIN the construction
    cases, TEST the verification cases; every other case is DEV, which it leaves alone.

    docs/method.md §1.7: construction, verification and evaluation cases are disjoint *by user*
    (``worker.cases.case_roles``): a concept is never verified on the held-out positions of a
    user whose training positions built it, nor evaluated (Figure 5, Table 8) on the cases that
    verified it. Without ``role`` (old callers): DEV joins TEST, as before the split.
    """
    if role is None:
        side = np.where(cases.side == DEV, TEST, cases.side).astype(np.int8)
    else:
        side = np.full(len(cases), DEV, dtype=np.int8)
        side[role == CONSTRUCTION] = TRAIN
        side[role == VERIFICATION] = TEST
    return Cases(cases.user, cases.length, side)


def interpret_codes(
    dataset: Dataset, cases: Cases, idx: np.ndarray, val: np.ndarray, top: np.ndarray,
    n_latents: int, n: int, seed: int, title_words: bool = False,
    role: np.ndarray | None = None,
) -> CodesInterpretation:  # fmt: skip
    """docs/method.md §1.6–1.8 on one set of codes: idx / val [C, k], top [C, 10] the model's top
    items; TF-IDF reads the descriptive fields (and titles if ``title_words``); ``role`` [C] the
    case sets of ``worker.cases.case_roles``."""
    train_mask = cases.side == TRAIN
    cases = verification_pool(cases, role)
    edges = fit_level_edges(idx, val, train_mask, n_latents)
    levels = assign_levels(idx, val, edges)
    pooled_levels = assign_levels(idx, val, fit_level_edges(idx, val, train_mask, n_latents, False))
    examples = select_examples(cases, idx, val, levels, top, n_latents, n=n, seed=seed)
    return CodesInterpretation(
        n_latents=n_latents,
        edges=edges,
        levels=levels,
        pooled_levels=pooled_levels,
        examples=examples,
        concepts=tfidf_concepts(
            examples,
            descriptive_text(dataset, title_words),
            TfidfConfig(null_seed=seed),
            excluded=not_concepts(dataset, title_words),
        ),
        statistics=latent_statistics(idx, val, train_mask, n_latents),
    )


def interpret(run: Run) -> None:
    cfg, dataset, probe, rec, sae = run.config, run.dataset, run.probe, run.record, run.sae
    cases, reps = probe.cases, probe.reps
    role = case_roles(cases, probe.sequential, cfg.seed)  # docs/method.md §1.7: by user
    sae_part = interpret_codes(
        dataset, cases, rec.latent_idx, rec.latent_val, rec.top_items, sae.n_latents,
        cfg.n_examples, cfg.seed, cfg.tfidf_title_words, role,
    )  # fmt: skip
    # Base (paper §4.3): the raw dimensions as latents, through the same construction/verification.
    base_idx, base_val = base_latents(reps, sae.k, fit_mask=cases.side == TRAIN)
    base_part = interpret_codes(
        dataset, cases, base_idx, base_val, rec.top_items, reps.shape[1], cfg.n_examples, cfg.seed,
        cfg.tfidf_title_words, role,
    )  # fmt: skip
    base_part.codes = (base_idx, base_val)
    W_dec = sae.W_dec.detach().numpy()
    promoted, suppressed = decoder_item_effects(W_dec, probe.item_emb)
    result = Interpretation(sae_part, base_part, promoted, suppressed)
    result.save(run.dir)
    run.interpretation = result
    n_ok = sum(is_verified(c.confidence, details_null_p(c.details)) for c in sae_part.concepts)
    run.log(
        f"  verified TF-IDF concepts (>= 0.8 and null p <= 0.05, n >= 19): {n_ok} of "
        f"{sae.n_latents} latents"
    )
