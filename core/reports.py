"""What the worker reports and the backend shows: the typed records of a run's numbers.

The worker fills these models stage by stage (``recommender_report.json``, ``sae_report.json``,
``report.json`` in the run directory) and publishes them together as :class:`RunMetrics` in the
run's ``metrics`` column; the backend validates that column back into :class:`RunMetrics` and
builds its pages from attributes, never from string paths. Every field is optional so that a
run published before a field existed still opens (the page says "not computed" for it), and
fields the worker adds later survive a round trip (``extra="allow"``) until a model names them.

The metric definitions are in docs/method.md (§1.4 for the SAE's, §1.9 for the paper's tables).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.jsonsafe import jsonable

# Paper §3.3.2 / Table 4: a concept with confidence >= 0.8 counts as verified.
VERIFIED_CONFIDENCE = 0.8


class Record(BaseModel):
    """Base of every report record: lenient on input (old runs, NaN), exact on output."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        """NaN and infinities become None: JSON has no NaN, and a page shows "not computed"."""
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def to_json(self) -> dict[str, Any]:
        """The JSON the run directory and the database keep (aliases, extras included)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


class Interval(Record):
    """A mean with its 95% bootstrap confidence interval (docs/method.md §1.2)."""

    mean: float | None = None
    lo: float | None = None
    hi: float | None = None


# metric name ("ndcg@10", "hr@20", ...) -> its interval
RankingCI = dict[str, Interval]


class RecommenderReport(Record):
    """``recommender_report.json``: training, dev selection and test ranking (docs §1.2)."""

    name: str | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    dev: dict[str, float | None] = Field(default_factory=dict)
    test: dict[str, float | None] = Field(default_factory=dict)
    test_ci: RankingCI = Field(default_factory=dict)
    mostpop_test_ci: RankingCI = Field(default_factory=dict)
    train_seconds: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)


class DenseAEReport(Record):
    """The dense autoencoder baseline (8 hidden units, paper Table 7)."""

    fvu_train: float | None = None
    fvu_dev: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    train_seconds: float | None = None


class SAEReport(Record):
    """``sae_report.json``: the TopK SAE's training, held-out FVU and baselines (docs §1.4)."""

    n_latents: int | None = None
    fvu_train: float | None = None
    fvu_dev: float | None = None
    fvu_test: float | None = None  # on vectors the SAE never trained on
    pca_fvu_test: float | None = None
    random_sae_fvu_test: float | None = None
    ae_fvu_test: float | None = None
    dev_score: float | None = None
    score_tolerance: float | None = None
    dead_fraction: float | None = None
    l0: float | None = None
    k_aux: int | None = None
    dead_window: int | None = None
    batch_size: int | None = None
    steps: int | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    train_seconds: float | None = None
    vectors_per_second: float | None = None
    n_train_vectors: int | None = None
    n_dev_vectors: int | None = None
    n_test_vectors: int | None = None
    ae: DenseAEReport = Field(default_factory=DenseAEReport)
    config: dict[str, Any] = Field(default_factory=dict)
    # Table 7: representation name (mostpop, base, sae, random_sae, ae) -> ranking CIs
    ranking: dict[str, RankingCI] = Field(default_factory=dict)
    # The same over the users whose vectors the SAE never trained on (held out: the honest
    # figure for one-vector models) and over the users it trained on, beside it (docs §1.9).
    ranking_heldout: dict[str, RankingCI] = Field(default_factory=dict)
    ranking_trained: dict[str, RankingCI] = Field(default_factory=dict)
    n_heldout_users: int | None = None
    n_trained_users: int | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)

    def retained(self, split: str = "heldout", metric: str = "ndcg@10") -> float | None:
        """SAE ÷ base ``metric`` on ``split`` ("heldout", "trained" or "all")."""
        table = {"heldout": self.ranking_heldout, "trained": self.ranking_trained}.get(
            split, self.ranking
        )
        sae, base = table.get("sae"), table.get("base")
        if sae is None or base is None or metric not in sae or metric not in base:
            return None
        return sae[metric].mean / base[metric].mean if base[metric].mean else None


class Similarity(Record):
    """Table 3 for one representation: intra-/inter-latent similarity of verified latents."""

    intra: float | None = None
    inter: float | None = None
    n_latents: int | None = None


class ConceptCounts(Record):
    """Table 4 for one representation and method: latents and unique concepts."""

    latents_verified: int | None = None
    concepts_verified: int | None = None
    latents_all: int | None = None
    concepts_all: int | None = None


class ConfidenceHistogram(Record):
    """Figure 2: confidence counts in [i/10, (i+1)/10) bins; unverifiable latents apart."""

    edges: list[float] = Field(default_factory=list)
    counts: list[int] = Field(default_factory=list)
    n_unverified: int | None = None


class HitRatioByLevel(Record):
    """Figure 5: the concept's hit ratio in the top-1 item per activation level."""

    levels: list[int] = Field(default_factory=list)
    hit_ratio: list[float | None] = Field(default_factory=list)
    n: list[int] = Field(default_factory=list)
    global_rate: float | None = Field(default=None, alias="global")


class CoverageSubset(Record):
    """Table 6 for one subset of features (all, or single-term ones)."""

    n_features: int | None = None
    n_covered: int | None = None
    coverage: float | None = None
    covered: list[str] = Field(default_factory=list)


class FeatureCoverage(Record):
    """Table 6 for one kind of feature (genres, tags)."""

    all: CoverageSubset | None = None
    single_term: CoverageSubset | None = None
    no_token: list[str] = Field(default_factory=list)


class TuningSummary(Record):
    """Table 8: concept presence in the top 10 per activation scale, related vs other concepts."""

    scales: list[float] = Field(default_factory=list)
    related: list[float | None] = Field(default_factory=list)  # eq. 5, share of cases
    other: list[float | None] = Field(default_factory=list)
    related_share: list[float | None] = Field(default_factory=list)  # share of top-10 items
    other_share: list[float | None] = Field(default_factory=list)
    n_latents: int | None = None
    mode: str | None = None


class SweepRow(Record):
    """Figures 7/8: one SAE of the sensitivity sweep."""

    scale: int | None = None
    k: int | None = None
    n_latents: int | None = None
    fvu_train: float | None = None
    fvu_dev: float | None = None
    fvu_test: float | None = None
    pca_fvu_test: float | None = None
    dead_fraction: float | None = None
    dead_fraction_test: float | None = None
    best_epoch: int | None = None
    vectors_per_second: float | None = None


class PaperReport(Record):
    """``report.json``: the paper's tables and figures on this run (docs/method.md §1.9).

    Keys ``"sae"`` and ``"base"`` name the representation (the SAE's latents, or the model's raw
    dimensions); ``figure5`` keys are ``<representation>_<levels|pooled_levels>``.
    """

    table3: dict[str, Similarity] = Field(default_factory=dict)
    table4: dict[str, ConceptCounts] = Field(default_factory=dict)
    table4_llm: dict[str, ConceptCounts] | None = None
    figure2: dict[str, ConfidenceHistogram] = Field(default_factory=dict)
    figure2_llm: dict[str, ConfidenceHistogram] | None = None
    figure5: dict[str, HitRatioByLevel] = Field(default_factory=dict)
    table6: dict[str, FeatureCoverage] = Field(default_factory=dict)
    table7: dict[str, RankingCI] = Field(default_factory=dict)
    table8: TuningSummary | None = None
    sweep: list[SweepRow] | None = None


class RunMetrics(Record):
    """Everything numeric a published run carries (the ``metrics`` column)."""

    dataset: dict[str, Any] = Field(default_factory=dict)  # preprocessing counts (docs §1.1)
    recommender: RecommenderReport = Field(default_factory=RecommenderReport)
    sae: SAEReport = Field(default_factory=SAEReport)
    report: PaperReport = Field(default_factory=PaperReport)
    timings: dict[str, float | None] = Field(default_factory=dict)  # stage -> seconds

    @classmethod
    def from_column(cls, metrics: dict[str, Any] | None) -> RunMetrics:
        """A run's ``metrics`` column as published (any age) -> the typed record.

        Non-finite numbers anywhere (in lists and dicts too, not only in float fields) read as
        None, so a page never shows NaN.
        """
        return cls.model_validate(jsonable(metrics or {}))
