"""The permutation null of every TF-IDF confidence (docs/method.md §1.11).

For latent l with concept c_l and verification cases V_l (its positives and random negatives),
the null has two parts, each conf computed exactly like l's own (exact term matching, paper
§3.3.2):

- other concepts on l's cases, ``{conf(c_m, V_l) : m != l}`` over the concepts of the run's
  other latents (is l's concept better than an unrelated one on these cases?);
- l's concept on other latents' cases, ``{conf(c_l, V_m) : m != l}`` over the other scored
  latents (its base rate: does the term score this well on any latent's cases?).

A latent m whose term equals c_l is no unrelated concept and is left out of both; ``size``, when
given, bounds each part to a seeded sample. Stored in ``concept.details["null"]``: the rank
p-value p = (r + 1) / (n + 1), r, p95, mean, median, n (``core.reports.null_stats``), the two
parts' sizes and the lift ``conf - median``. Whether a concept counts as verified is
``core.reports.is_verified`` (p <= 0.05, which needs n >= 19).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.reports import null_stats

if TYPE_CHECKING:
    from worker.interpret.examples import LatentExamples
    from worker.interpret.tfidf import TfidfConcept


def _case_items(concept: TfidfConcept) -> tuple[list[int], list[int]]:
    details = concept.details
    return (
        [int(c["item"]) for c in details.get("verification", [])],
        [int(c["item"]) for c in details.get("random", [])],
    )


def tfidf_null(
    concepts: Sequence[TfidfConcept],
    examples: LatentExamples,
    tokens_of: Callable[[int], frozenset[str]],
    seed: int = 0,
    size: int | None = None,
) -> None:
    """Set ``details["null"]`` of every concept that has a confidence (see the module doc)."""
    del examples  # the cases are the ones each concept's details record
    scored = [c for c in concepts if c.confidence is not None]
    named = [c for c in concepts if c.text]
    if not scored:
        return
    terms = sorted({c.text for c in named})
    col = {t: j for j, t in enumerate(terms)}
    items = sorted({i for c in scored for side in _case_items(c) for i in side})
    row = {i: r for r, i in enumerate(items)}
    has = np.zeros((len(items), len(terms)), dtype=bool)  # item carries term
    for i in items:
        for token in tokens_of(i):
            j = col.get(token)
            if j is not None:
                has[row[i], j] = True
    term_of = np.array([col[c.text] for c in named], dtype=np.int64)
    latent_of = np.array([c.latent for c in named], dtype=np.int64)
    # conf(term, V_m) for every scored latent m and every term: [S, T]
    conf_of = np.empty((len(scored), len(terms)))
    for s, concept in enumerate(scored):
        pos, neg = _case_items(concept)
        hits = has[[row[i] for i in pos]].sum(axis=0) + (~has[[row[i] for i in neg]]).sum(axis=0)
        conf_of[s] = hits / (len(pos) + len(neg))
    scored_latent = np.array([c.latent for c in scored], dtype=np.int64)
    scored_term = np.array([col.get(c.text, -1) for c in scored], dtype=np.int64)
    for s, concept in enumerate(scored):
        own_term = col[concept.text]
        others = np.flatnonzero((latent_of != concept.latent) & (term_of != own_term))
        # the base rate: the same term on other latents' cases (their terms differ from it)
        elsewhere = np.flatnonzero((scored_latent != concept.latent) & (scored_term != own_term))
        rng = np.random.default_rng([seed, concept.latent])
        if size is not None and len(others) > size:
            others = np.sort(rng.choice(others, size=size, replace=False))
        if size is not None and len(elsewhere) > size:
            elsewhere = np.sort(rng.choice(elsewhere, size=size, replace=False))
        values = conf_of[s, term_of[others]].tolist() + conf_of[elsewhere, own_term].tolist()
        own = float(concept.confidence or 0.0)  # scored: never None here
        null = null_stats(values, seed, own=own)
        null["n_other_concepts"] = len(others)
        null["n_other_cases"] = len(elsewhere)
        median = null["median"]
        null["lift"] = None if median is None else own - median
        concept.details["null"] = null
