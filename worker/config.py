"""What defines a run (``RunConfig``, saved as its ``config.json``) and the stages' order.

Light on purpose (no torch, no pandas): the command line reads it to build its help and its
options before any heavy module is imported.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT

DEMO_DATA = REPO_ROOT / "data" / "ml-latest-small"
# The stages in the order they run (``worker.pipeline`` maps each name to its function).
STAGES = (
    "prepare",
    "train_recommender",
    "probe",
    "train_sae",
    "record",
    "interpret",
    "explain_llm",
    "evaluate",
    "sweep",
    "publish",
)

# The first stage that reads each RunConfig field (the rest read it in "prepare" or later).
FIRST_STAGE_USING = {
    "recommender": "train_recommender",
    "recommender_overrides": "train_recommender",
    "sae_scale": "train_sae",
    "sae_k": "train_sae",
    "sae_overrides": "train_sae",
    "n_examples": "interpret",
    "tfidf_title_words": "interpret",
    "llm_null": "explain_llm",
    "llm_latents": "explain_llm",
    "llm_local": "explain_llm",
    "tuning": "evaluate",
    "sweep": "sweep",
}

# Modules of worker/recommenders/ that are machinery, not models.
RECOMMENDER_MACHINERY = frozenset({"base", "io", "sampling", "train"})


def recommender_modules() -> list[str]:
    """The model modules of ``worker/recommenders/`` (read from the folder, nothing imported)."""
    folder = Path(__file__).resolve().parent / "recommenders"
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(folder)])
        if m.name not in RECOMMENDER_MACHINERY and not m.name.startswith("_")
    )


@dataclass
class RunConfig:
    """Everything that defines a run; saved as the run directory's config.json."""

    recommender: str = "sasrec"  # a name in worker.recommenders.REGISTRY
    dataset_format: str = "movielens-latest"  # a name in worker.data.readers.READERS
    dataset_path: str = str(DEMO_DATA)  # a local directory in that format
    dataset_name: str = "ml-latest-small"
    run_id: str = ""  # default: "<dataset_name>-<recommender>"
    seed: int = 0  # every random choice of every stage derives from it
    rating_threshold: float | None = 4.0  # positive interactions (docs/method.md §1.1)
    k_core: int = 5
    recommender_overrides: dict[str, Any] = field(default_factory=dict)  # RecommenderConfig fields
    # n_latents = scale * d (docs/method.md §1.4). 0: 16 for sequential models (tens of thousands of
    # training vectors); for one vector per user, the largest power of two <= 16 with
    # scale * d <= n_train / 3 counting the fold-in vectors, and never below 4 (a dictionary has
    # more latents than dimensions; docs/method.md §1.4).
    sae_scale: int = 0
    sae_k: int = 8
    # One-vector-per-user models (BPRMF, LightGCN): fold-in vectors of this many sub-sampled
    # training histories per TRAIN-side user join the SAE's training set, so it can learn a real
    # dictionary of >= 4·d latents (docs/method.md §1.4; worker/sae/augment.py). 0: none.
    sae_fold_ins: int = 24
    sae_overrides: dict[str, Any] = field(default_factory=dict)  # SAEConfig fields
    n_examples: int = 5  # N construction / verification / random cases per latent (paper §3.3)
    # TF-IDF terms come from the items' descriptive fields (genres, tags, free text); title words
    # too only when this is set (docs/method.md §1.8).
    tfidf_title_words: bool = False
    tuning: bool = True  # targeted-tuning evaluation (paper §8)
    # LLM concepts (paper §3.3): how many latents to explain (0: none; the verified and most
    # active first), through RECSAE_LLM_BASE_URL, or the bundled local model with llm_local.
    llm_latents: int = 0
    llm_local: bool = False
    # The null of each LLM confidence (docs/method.md §1.11): how many other explained latents'
    # concepts (a seeded sample) are verified on its cases; each costs 2N LLM requests. A 5%
    # rank test needs >= 19 (core.reports.NULL_MIN_N): below that no LLM concept is verified.
    llm_null: int = 19
    sweep: bool = False  # sensitivity to s in {8, 16, 32} and k in {4, 8, 16} (paper §7)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = f"{self.dataset_name}-{self.recommender}"
