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

# Paper §3.3.2 / Table 4: a concept needs confidence >= 0.8 to count as verified ...
VERIFIED_CONFIDENCE = 0.8
# ... and, docs/method.md §1.11, its permutation null must reject at 5%: the rank p-value
# (r + 1) / (n + 1) <= NULL_ALPHA, where r of the n null draws score at least as high. The
# smallest p a null of n draws can give is 1 / (n + 1), so a 5% test needs n >= NULL_MIN_N.
NULL_ALPHA = 0.05
NULL_MIN_N = 19
NULL_QUANTILE = 0.95  # the percentile shown beside the p-value (a description, not the test)
_EPS = 1e-9  # confidences are ratios of small integers: compare with a tolerance

# The verdict of a concept (docs/method.md §1.11), one code everywhere (latents table, pages,
# JSON twins, reports): the list's badge, colour and ``verified`` filter follow it.
VERDICT_VERIFIED = "verified"  # confidence >= 0.8 and null p <= 0.05 with n >= 19
VERDICT_NOT_OVER_NULL = "not_over_null"  # >= 0.8, but the null does not reject
VERDICT_BELOW = "below"  # a confidence below 0.8
VERDICT_NO_NULL = "no_null"  # >= 0.8, but no null of >= 19 draws: not verified
VERDICT_DEGENERATE = "degenerate"  # a label that names nothing (or could not be parsed)
VERDICTS = (
    VERDICT_VERIFIED, VERDICT_NOT_OVER_NULL, VERDICT_BELOW, VERDICT_NO_NULL, VERDICT_DEGENERATE
)  # fmt: skip


# Eq. 4 needs this share of the N cases of EACH side (positives: the latent's verification
# cases; negatives: its random cases) judged -- parsed, for the LLM -- or it gives no
# confidence (docs/method.md §1.8): 3 of 5 at N = 5, so no score rests on one side alone.
MIN_PARSED_SHARE_PER_SIDE = 0.6


def min_parsed_per_side(n: int) -> int:
    """The fewest judged cases per side eq. 4 accepts when N = ``n`` (at least 1)."""
    return max(1, math.ceil(MIN_PARSED_SHARE_PER_SIDE * n - _EPS))


def is_confident(confidence: float | None) -> bool:
    """The paper's test alone (Table 4's "P >= 0.8"): a known confidence >= 0.8."""
    return confidence is not None and confidence >= VERIFIED_CONFIDENCE - _EPS


def is_verified(confidence: float | None, null_p: float | None) -> bool:
    """THE definition of a verified concept (docs/method.md §1.9, §1.11): confidence >= 0.8
    and its null's rank p-value <= 0.05 (which needs n >= 19 null draws; ``details_null_p``
    gives None below that). Without such a null a concept cannot show it beats one, so it is
    not verified."""
    if confidence is None or null_p is None:
        return False
    return is_confident(confidence) and null_p <= NULL_ALPHA + _EPS


def rank_p_value(own: float, values: list[float]) -> tuple[float | None, int]:
    """The permutation test's p-value (r + 1) / (n + 1) and r, the null draws scoring at least
    ``own`` (ties count against the concept: confidences are ratios of small integers);
    (None, 0) without draws."""
    if not values:
        return None, 0
    r = sum(1 for v in values if v >= own - _EPS)
    return (r + 1) / (len(values) + 1), r


def null_stats(
    values: list[float], seed: int | None = None, own: float | None = None
) -> dict[str, Any]:
    """What a concept keeps of its null (``details["null"]``, docs/method.md §1.11): the rank
    p-value ``p`` of ``own`` and its ``r`` (with ``own``), the 95th percentile (linear
    interpolation), mean, median and count ``n``; p95 and p None without values."""
    vals = sorted(float(v) for v in values)
    if not vals:
        return {"p": None, "r": 0, "p95": None, "mean": None, "median": None, "n": 0, "seed": seed}
    p, r = rank_p_value(float(own), vals) if own is not None else (None, 0)
    return {
        "p": p,
        "r": r,
        "p95": _quantile(vals, NULL_QUANTILE),
        "mean": sum(vals) / len(vals),
        "median": _quantile(vals, 0.5),
        "n": len(vals),
        "seed": seed,
    }


def _quantile(sorted_vals: list[float], q: float) -> float:
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def _null_of(details: dict[str, Any] | None) -> dict[str, Any]:
    null = (details or {}).get("null")
    return null if isinstance(null, dict) else {}


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def details_null_p95(details: dict[str, Any] | None) -> float | None:
    """The null's 95th percentile a concept's ``details`` carry (None: no null computed)."""
    return _number(_null_of(details).get("p95"))


def details_null_n(details: dict[str, Any] | None) -> int:
    """How many null draws a concept's ``details`` record (0: no null)."""
    n = _number(_null_of(details).get("n"))
    return int(n) if n is not None else 0


def details_null_p_any(details: dict[str, Any] | None) -> float | None:
    """The rank p-value a concept's null reports, whatever its size (shown, not a verdict)."""
    return _number(_null_of(details).get("p"))


def details_null_p(details: dict[str, Any] | None) -> float | None:
    """The null's rank p-value when it is a test: None without one, or with fewer than
    NULL_MIN_N draws (such a null cannot reject at 5%: "no null", docs/method.md §1.11)."""
    if details_null_n(details) < NULL_MIN_N:
        return None
    return _number(_null_of(details).get("p"))


def verdict(
    confidence: float | None, details: dict[str, Any] | None, degenerate: bool = False
) -> str | None:
    """A concept's verdict code (``VERDICTS``); None: no confidence and not degenerate (the
    concept's status says why, e.g. too rare)."""
    if degenerate:
        return VERDICT_DEGENERATE
    if confidence is None:
        return None
    if not is_confident(confidence):
        return VERDICT_BELOW
    p = details_null_p(details)
    if p is None:
        return VERDICT_NO_NULL
    return VERDICT_VERIFIED if is_verified(confidence, p) else VERDICT_NOT_OVER_NULL


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
    threads: list[int] = Field(default_factory=list)  # torch threads per epoch (automatic)
    epoch_seconds: list[float] = Field(default_factory=list)  # training steps, evaluations apart
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
    score_tolerance: float | None = None  # the dev-NDCG veto's tolerance at the winner (§1.4)
    veto: str | None = None  # "paired" (per-case difference CI) or "fixed"
    vetoed_lower_fvu: int | None = None  # evaluations with a lower dev FVU the veto removed
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
    threads: list[int] = Field(default_factory=list)  # torch threads per epoch (automatic)
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
    # Paired over the same users (docs/method.md §1.9): representation -> {"metric", "diff"
    # (NDCG(x_hat) - NDCG(x)), "retained" (% of base), each {"mean", "lo", "hi"}, "n", "seed"}
    ranking_paired: dict[str, dict[str, Any]] = Field(default_factory=dict)
    n_heldout_users: int | None = None
    n_trained_users: int | None = None
    # One-vector models: fold-in vectors of sub-sampled training histories the SAE also trained
    # on (docs/method.md §1.4), the calibrated step count and its error per step count tried.
    n_fold_in_vectors: int | None = None
    fold_in_steps: int | None = None
    fold_in_calibration_error: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)

    def retained(self, split: str = "heldout", metric: str = "ndcg@10") -> float | None:
        """SAE ÷ base ``metric`` on ``split`` ("heldout", "trained" or "all")."""
        table = {"heldout": self.ranking_heldout, "trained": self.ranking_trained}.get(
            split, self.ranking
        )
        sae, base = table.get("sae"), table.get("base")
        if sae is None or base is None or metric not in sae or metric not in base:
            return None
        ours, theirs = sae[metric].mean, base[metric].mean
        return ours / theirs if ours is not None and theirs else None


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


class NullSummary(Record):
    """docs/method.md §1.11 for one method and representation: latents with confidence >= 0.8,
    how many are verified (their null rejects at 5%: rank p <= 0.05, n >= 19 draws), and the
    nulls themselves."""

    confident: int | None = None  # confidence >= 0.8 (the paper's P >= 0.8)
    verified: int | None = None  # ... and the null's rank p <= 0.05: the verified count
    with_confidence: int | None = None  # latents with a confidence
    with_null: int | None = None  # ... and a null (any size)
    with_test: int | None = None  # ... of at least 19 draws (a 5% test is possible)
    null_n_min: int | None = None  # the smallest null of any verified concept (>= 19)
    null_n_median: float | None = None  # median null size over concepts with a null
    null_p95_mean: float | None = None  # mean over latents with a null of its p95
    null_p95_median: float | None = None
    margin_median: float | None = None  # TF-IDF: median weight margin of the concept term


class OutputCheckSummary(Record):
    """One representation's output checks (docs/method.md §1.9, "Output check")."""

    verified: int | None = None  # verified concepts that were checked
    verified_confirmed: int | None = None  # ... of which confirmed on output
    confirmed_share: float | None = None  # their share (None: no verified concept)
    checked: int | None = None  # every concept checked (verified or not)
    verdicts: dict[str, int] = Field(default_factory=dict)  # confirmed / refuted / too_few
    modes: dict[str, int] = Field(default_factory=dict)  # active / inactive_set


class OutputCheckReport(Record):
    """The output checks of a run: the SAE's and the Base's TF-IDF concepts, the SAE's LLM
    concepts, on the evaluation users (±``scale`` in replace mode)."""

    sae: OutputCheckSummary | None = None
    base: OutputCheckSummary | None = None
    llm: OutputCheckSummary | None = None
    n_users: int | None = None  # evaluation users (one case each)
    scale: float | None = None
    min_users: int | None = None  # fewer active: inactive_set; fewer at all: too_few
    seconds: float | None = None


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
    # docs/method.md §1.11: method ("tfidf", "llm") -> representation -> the null's effect
    null: dict[str, dict[str, NullSummary]] | None = None
    # docs/method.md §1.7: construction / verification / evaluation cases and users, and the
    # users shared by any two sets (``overlap_users``, 0 by construction)
    case_sets: dict[str, int] | None = None
    # docs/method.md §1.9, "Output check": does steering move the concept's share in the top 10
    output_check: OutputCheckReport | None = None


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
