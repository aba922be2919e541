"""TF-IDF concepts and their verification (docs/method.md §1.8, paper §3.3.1 / §3.3.2).

Construction: one document per latent, the metadata text (``Dataset.item_text``) of the predicted
items of its construction cases; a ``TfidfVectorizer`` is fitted across all latents' documents,
so a term scores high when it is frequent for this latent and rare among the others. The concept
is the top term; the top 3 are kept with their scores.

Verification (paper §3.3.2, exact term matching): a verification case is a hit when the term is
one of the tokens of its predicted item's metadata; a random (non-active) case is a failure when
it is. Confidence = (hits on positives + misses on negatives) / (#positives + #negatives), which
is (.. ) / (N + N) whenever the latent is not ``too_rare``; with fewer than
``core.reports.min_parsed_per_side(N)`` cases on either side there is no confidence
(``too_few_parsed``, docs/method.md §1.8).

Candidates (docs/method.md §1.8): the items' descriptive fields -- genres, tags, free text --
(:func:`descriptive_text`); title words only when asked (``RunConfig.tfidf_title_words``). Each
concept keeps its margin over the runner-up term (``details["margin"]``), and its permutation
null (``details["null"]``, ``worker.interpret.null``, docs/method.md §1.11).

Tokenisation is :func:`core.text.analyze`, shared with every term match (steering included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from core.jsonsafe import jsonable
from core.reports import min_parsed_per_side
from core.text import CONCEPT_STOP_WORDS, analyze, is_person_name
from worker.data.dataset import Dataset
from worker.interpret.examples import LatentExamples
from worker.interpret.null import tfidf_null


def _pretokenized(doc: list[str]) -> list[str]:
    """The vectorizers' analyzer: documents arrive as token lists already (see tfidf_concepts)."""
    return doc


@dataclass
class TfidfConfig:
    n_terms: int = 3  # terms kept per latent (the concept is the first)
    sublinear_tf: bool = False  # sklearn default; raw counts, as a plain TF-IDF
    min_df: int = 1  # a term must appear in at least this many latent documents
    # A concept is what the construction items share: terms in at least this many of them rank
    # before the rest (when none is shared the best term is kept, and verification judges it).
    # Without it, title words of a single item ("gump", "ark") win on IDF and can never verify
    # on N distinct items.
    min_items: int = 2
    null_seed: int = 0  # seeds the null's sample of other concepts (docs/method.md §1.11)
    null_size: int | None = None  # other latents' concepts per null; None: all of them


def descriptive_text(dataset: Dataset, title_words: bool = False) -> list[str]:
    """[n_items] what TF-IDF counts and verification matches (docs/method.md §1.8): genres, tags
    and free text -- the fields that describe an item -- and its title only if ``title_words``.
    Title words name one item ("ii", "die", "guardians"), not what items share."""
    out = []
    for title, genres, tags, text in zip(
        dataset.item_title, dataset.item_genres, dataset.item_tags, dataset.item_text, strict=True
    ):
        fields = [", ".join(genres), ", ".join(tags)]
        # item_text is "title | genres | tags | free text" (docs/method.md §1.1): the free text
        # is what is left of it
        free = [p for p in text.split(" | ") if p and p != title and p not in fields]
        out.append(" | ".join(p for p in ([title] if title_words else []) + fields + free if p))
    return out


def not_concepts(dataset: Dataset, title_words: bool = False) -> frozenset[str]:
    """Tokens never made a concept or a top term (docs/method.md §1.8, 'no names, no stop-like
    words'): :data:`core.text.CONCEPT_STOP_WORDS`, and every word that the items' descriptive
    fields carry only inside tags that read as a person's name (:func:`core.text.is_person_name`:
    "Steve Buscemi", "Albert Einstein") -- a word any genre, other tag or free text also carries
    stays a candidate. Verification still matches every token."""
    named: set[str] = set()
    elsewhere: set[str] = set()
    for title, genres, tags, text in zip(
        dataset.item_title, dataset.item_genres, dataset.item_tags, dataset.item_text, strict=True
    ):
        fields = [", ".join(genres), ", ".join(tags)]
        free = [p for p in text.split(" | ") if p and p != title and p not in fields]
        for tag in tags:
            (named if is_person_name(tag) else elsewhere).update(analyze(tag))
        for part in [*genres, *free, *([title] if title_words else [])]:
            elsewhere.update(analyze(part))
    return frozenset(CONCEPT_STOP_WORDS | (named - elsewhere))


@dataclass
class TfidfConcept:
    """One latent's TF-IDF concept, shaped like a ``concepts`` row (core.store.schema)."""

    latent: int
    text: str  # the concept: top term ("" when status is no_text)
    terms: list[list[Any]]  # [[term, score], ...] best first, up to n_terms
    confidence: float | None  # None unless status == "verified"
    status: str  # "verified" (has a confidence) | "too_rare" | "too_few_parsed" | "no_text"
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """This concept as JSON (numpy scalars as Python numbers)."""
        return jsonable(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TfidfConcept:
        """The inverse of :meth:`to_json`."""
        return cls(**data)


def verify_term(
    term: str,
    positive_items: Sequence[int],
    negative_items: Sequence[int],
    item_tokens: Mapping[int, frozenset[str]] | Sequence[frozenset[str]],
) -> tuple[float, list[bool], list[bool]]:
    """Confidence of ``term`` (paper §3.3.2) and whether it is present in each case's item.

    A positive is correct when the term is among its item's tokens, a negative when it is not.
    Returns (confidence, present on each positive, present on each negative).
    """
    if len(positive_items) + len(negative_items) == 0:
        raise ValueError("verify_term needs at least one positive or negative case")
    pos = [term in item_tokens[i] for i in positive_items]
    neg = [term in item_tokens[i] for i in negative_items]
    correct = sum(pos) + sum(not p for p in neg)
    return correct / (len(pos) + len(neg)), pos, neg


def _verify(
    concept: TfidfConcept, examples: LatentExamples, tokens_of: Callable[[int], frozenset[str]]
) -> None:
    """Verify ``concept.text`` on its latent's verification and random cases (paper §3.3.2):
    sets its details, status and (unless too rare) confidence."""
    latent = concept.latent
    ver, rnd = examples.verification, examples.random
    pos_slots = np.flatnonzero(ver.case[latent] >= 0)
    neg_slots = np.flatnonzero(rnd.case[latent] >= 0)
    pos_items = [int(i) for i in ver.item[latent, pos_slots]]
    neg_items = [int(i) for i in rnd.item[latent, neg_slots]]
    details: dict[str, Any] = {
        "construction_items": [int(i) for i in examples.construction.item[latent] if i >= 0],
        "verification": [],
        "random": [],
    }
    concept.details = details
    if not pos_items and not neg_items:
        concept.status = "too_rare"
        return
    tokens = {i: tokens_of(i) for i in set(pos_items) | set(neg_items)}
    confidence, pos_hit, neg_hit = verify_term(concept.text, pos_items, neg_items, tokens)
    details["verification"] = [
        {"case": int(c), "item": i, "present": h, "correct": h}
        for c, i, h in zip(ver.case[latent, pos_slots], pos_items, pos_hit, strict=True)
    ]
    details["random"] = [
        {"case": int(c), "item": i, "present": h, "correct": not h}
        for c, i, h in zip(rnd.case[latent, neg_slots], neg_items, neg_hit, strict=True)
    ]
    need = min_parsed_per_side(examples.n)
    if examples.too_rare[latent]:
        concept.status = "too_rare"  # docs/method.md §1.7: never verified on construction cases
    elif len(pos_items) < need or len(neg_items) < need:
        concept.status = "too_few_parsed"  # docs/method.md §1.8: eq. 4 needs both sides
        details["reason"] = (
            f"{len(pos_items)} positive and {len(neg_items)} negative cases; eq. 4 needs {need} "
            "on each side"
        )
    else:
        concept.status, concept.confidence = "verified", confidence


def tfidf_concepts(
    examples: LatentExamples,
    item_text: Sequence[str],
    config: TfidfConfig | None = None,
    analyzer: Callable[[str], list[str]] = analyze,
    excluded: frozenset[str] = frozenset(),
) -> list[TfidfConcept]:
    """One :class:`TfidfConcept` per latent (index = latent id).

    Documents come from ``examples.construction.item`` (the construction cases' predicted items);
    verification uses ``examples.verification`` and ``examples.random``. Latents whose document is
    empty or has no token get status "no_text"; latents marked too rare keep their terms but get
    confidence None. ``excluded`` (:func:`not_concepts`) are tokens never counted as candidates.
    """
    config = config or TfidfConfig()
    n_latents = examples.n_latents
    items = examples.construction.item
    if items.size and items.max() >= len(item_text):
        raise ValueError(f"example item {items.max()} is outside item_text ({len(item_text)})")
    item_tokens: dict[int, frozenset[str]] = {}

    def tokens_of(i: int) -> frozenset[str]:
        if i not in item_tokens:
            item_tokens[i] = frozenset(analyzer(item_text[i]))
        return item_tokens[i]

    # A latent's document: each construction item's distinct tokens, so a term's count is the
    # number of construction items whose metadata carries it.
    docs = [
        [t for i in row if i >= 0 for t in sorted(tokens_of(int(i))) if t not in excluded]
        for row in items
    ]
    has_doc = np.array([bool(d) for d in docs])
    concepts: list[TfidfConcept] = [
        TfidfConcept(latent=latent, text="", terms=[], confidence=None, status="no_text")
        for latent in range(n_latents)
    ]
    if not has_doc.any():
        return concepts

    vectorizer = TfidfVectorizer(
        analyzer=_pretokenized, sublinear_tf=config.sublinear_tf, min_df=config.min_df
    )
    doc_latents = np.flatnonzero(has_doc)
    weights = vectorizer.fit_transform([docs[i] for i in doc_latents]).tocsr()  # [D, V]
    vocab = vectorizer.get_feature_names_out()
    counts = CountVectorizer(analyzer=_pretokenized, vocabulary=vectorizer.vocabulary_).transform(
        [docs[i] for i in doc_latents]
    )  # [D, V]: construction items carrying each term

    for row, latent in enumerate(doc_latents):
        start, end = weights.indptr[row], weights.indptr[row + 1]
        cols, scores = weights.indices[start:end], weights.data[start:end]
        if len(cols) == 0:  # every term of the document fell under min_df
            continue
        shared = np.asarray(counts[row, cols].todense()).ravel() >= config.min_items
        # shared terms first, then by score; ties alphabetical
        best = np.lexsort((vocab[cols], -scores, ~shared))[: config.n_terms]
        terms = [[str(vocab[cols[j]]), float(scores[j])] for j in best]
        concept = concepts[latent]
        concept.text, concept.terms = str(terms[0][0]), terms
        _verify(concept, examples, tokens_of)
        # How clearly the concept beats the next candidate (the runner-up's weight is 0 if none)
        ranked = [float(scores[j]) for j in best] + [0.0]
        concept.details["margin"] = ranked[0] - ranked[1]
        concept.details["runner_up"] = terms[1][0] if len(terms) > 1 else None
    tfidf_null(concepts, examples, tokens_of, seed=config.null_seed, size=config.null_size)
    return concepts
