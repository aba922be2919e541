"""The rows a published run puts in the store, as typed records (one per table).

The worker builds these (``worker.stages.publish``) and hands them to
``core.store.writes.publish_run`` as dicts (:func:`rows`); the field names are the columns of
``core.store.schema`` (``run_id`` is filled in by the store). JSON columns hold plain Python
values (lists, dicts, numbers, None), never numpy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ItemRow:
    idx: int
    external_id: str
    title: str
    genres: list[str]
    tags: list[str]
    # the verification text (worker.interpret.tfidf.descriptive_text: genres, tags, free text;
    # titles only with tfidf_title_words): concept presence everywhere (docs/method.md §1.8)
    text: str
    popularity: int  # training interactions


@dataclass
class UserRow:
    idx: int
    external_id: str
    history: list[int]  # training items, in order
    dev_item: int
    test_item: int
    side: str  # "train" | "dev" | "test": where the user's vector went (docs/method.md §1.4)


@dataclass
class LatentRow:
    idx: int
    density: float
    max_activation: float
    mean_activation: float
    dead: bool
    histogram: dict[str, list[Any]]  # {"edges": [...], "counts": [...]}
    level_edges: list[float | None]  # 9 inner edges of the 10 levels (None: never active)
    n_active_construction: int
    n_active_verification: int
    too_rare: bool
    promoted: list[list[Any]]  # [[item, score], ...]
    suppressed: list[list[Any]]
    tfidf_confidence: float | None
    tfidf_concept: str | None
    tuning: dict[str, Any]  # Table 8 for this latent ({} when not tuned)
    llm_confidence: float | None
    llm_concept: str | None
    # The shown concepts' verdicts and nulls (core.reports.verdict, docs/method.md §1.11).
    tfidf_verdict: str | None = None
    tfidf_null_p: float | None = None
    tfidf_null_n: int | None = None
    llm_verdict: str | None = None
    llm_null_p: float | None = None
    llm_null_n: int | None = None
    # The shown concepts' output checks (docs/method.md §1.9; None: not checked).
    tfidf_output: str | None = None
    llm_output: str | None = None
    # Lenses (docs/method.md §6): confound correlations and the latent map (None: undefined).
    activity_corr: float | None = None
    popularity_corr: float | None = None
    map_x: float | None = None
    map_y: float | None = None


# The latent map (docs/method.md §6): t-SNE from this many latents up, PCA's first two below.
MAP_TSNE_MIN_LATENTS = 50


def map_method(n_latents: int) -> str:
    """How the latent map of an SAE with ``n_latents`` latents is laid out."""
    return "t-SNE" if n_latents >= MAP_TSNE_MIN_LATENTS else "PCA"


@dataclass
class ExampleRow:
    latent_idx: int
    role: str  # construction | verification | random
    user_idx: int
    history: list[int]  # the last items before the target (at most 20)
    predicted_item: int
    activation: float
    level: int


@dataclass
class ConceptRow:
    latent_idx: int
    method: str  # tfidf | llm
    text: str
    terms: list[list[Any]]  # [[term, score], ...]
    confidence: float | None
    status: str
    model: str | None
    details: dict[str, Any]
    output: dict[str, Any] | None = None  # its output check (docs/method.md §1.9)


@dataclass
class CaseRow:
    """A user's recorded test-position vector: its TopK codes and the model's top-10."""

    user_idx: int
    latent_idx: list[int]
    latent_val: list[float]
    top_items: list[int]
    top1_item: int


@dataclass
class RunRow:
    id: str
    dataset: str
    recommender: str
    artifact_dir: str
    n_users: int
    n_items: int
    n_latents: int
    k: int
    item_category: str
    item_name: str
    config: dict[str, Any]
    metrics: dict[str, Any]  # core.reports.RunMetrics as JSON


def rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Records -> the dicts ``publish_run`` takes."""
    return [asdict(r) for r in records]
