"""The pipeline, as a table of contents (STYLE.md):

    prepare -> train_recommender -> probe -> train_sae -> record -> interpret -> evaluate -> publish

Each stage reads what the stages before it left in the run directory and writes its own
artifacts there (weights as safetensors, arrays as npz, numbers as json), so a stage can be rerun
alone and a finished stage is skipped unless forced. Only ``publish`` touches the database, in one
transaction (``core.store.writes.publish_run``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.jsonsafe import jsonable
from core.settings import REPO_ROOT, Settings, get_settings

DEMO_DATA = REPO_ROOT / "data" / "ml-latest-small"
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
    "llm_latents": "explain_llm",
    "llm_local": "explain_llm",
    "tuning": "evaluate",
    "sweep": "sweep",
}


@dataclass
class RunConfig:
    """Everything that defines a run; saved as the run directory's config.json."""

    recommender: str = "sasrec"  # a name in worker.recommenders.REGISTRY
    dataset_format: str = "movielens-latest"  # a name in worker.data.readers.READERS
    dataset_path: str = str(DEMO_DATA)  # a local directory in that format
    dataset_name: str = "ml-latest-small"
    run_id: str = ""  # default: "<dataset_name>-<recommender>"
    seed: int = 0  # every random choice of every stage derives from it
    rating_threshold: float | None = 4.0  # positive interactions (SPEC §1.1)
    k_core: int = 5
    recommender_overrides: dict[str, Any] = field(default_factory=dict)  # RecommenderConfig fields
    # n_latents = scale * d (SPEC §1.4). 0: 16 for sequential models (tens of thousands of
    # training vectors); for one vector per user, the largest power of two <= 16 with
    # scale * d <= n_train / 3, since 421 user vectors cannot feed 1,024 latents (SPEC §2).
    sae_scale: int = 0
    sae_k: int = 8
    sae_overrides: dict[str, Any] = field(default_factory=dict)  # SAEConfig fields
    n_examples: int = 5  # N construction / verification / random cases per latent (paper §3.3)
    tuning: bool = True  # targeted-tuning evaluation (paper §8)
    # LLM concepts (paper §3.3): how many latents to explain (0: none; the verified and most
    # active first), through RECSAE_LLM_BASE_URL, or the bundled local model with llm_local.
    llm_latents: int = 0
    llm_local: bool = False
    sweep: bool = False  # sensitivity to s in {8, 16, 32} and k in {4, 8, 16} (paper §7)

    def __post_init__(self) -> None:
        if not self.run_id:
            self.run_id = f"{self.dataset_name}-{self.recommender}"


class Run:
    """A run directory and the in-memory results of the stages run so far."""

    def __init__(self, config: RunConfig, settings: Settings | None = None, log=print) -> None:
        self.config = config
        self.settings = settings or get_settings()
        self.dir = self.settings.runs_dir / config.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log: Callable[[str], None] = log
        self._cache: dict[str, Any] = {}
        self._write_config()

    def _write_config(self) -> None:
        path = self.dir / "config.json"
        new = asdict(self.config)
        if path.exists():
            old = json.loads(path.read_text())
            changed = [key for key in new if old.get(key) != new[key]]
            if changed:
                # A changed field invalidates the first stage that reads it and all after it.
                first = min(STAGES.index(FIRST_STAGE_USING.get(key, "prepare")) for key in changed)
                self.log(
                    f"config of run {self.config.run_id} changed ({', '.join(changed)}): "
                    f"recomputing from {STAGES[first]}"
                )
                for name in STAGES[first:]:
                    (self.dir / f".done-{name}").unlink(missing_ok=True)
        path.write_text(json.dumps(new, indent=2))

    # -- bookkeeping --
    def done(self, stage: str) -> bool:
        return (self.dir / f".done-{stage}").exists()

    def mark_done(self, stage: str, seconds: float) -> None:
        (self.dir / f".done-{stage}").write_text(json.dumps({"seconds": seconds}))

    def write_json(self, name: str, obj: Any) -> None:
        (self.dir / name).write_text(json.dumps(jsonable(obj), indent=2))

    def read_json(self, name: str) -> Any:
        path = self.dir / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run the stage that writes it first "
                f"(recsae run --run-id {self.config.run_id})"
            )
        return json.loads(path.read_text())

    def timings(self) -> dict[str, float]:
        out = {}
        for name in STAGES:
            marker = self.dir / f".done-{name}"
            if marker.exists():
                out[name] = json.loads(marker.read_text())["seconds"]
        return out


def run_pipeline(
    config: RunConfig,
    settings: Settings | None = None,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Run:
    """Run the given stages in order, skipping finished ones unless ``force``."""
    from worker import stages as stage_functions

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    run = Run(config, settings, log)
    for name in STAGES:
        if name not in stages:
            continue
        if run.done(name) and not force and name != "publish":
            log(f"[{config.run_id}] {name}: done already (use --force to recompute)")
            continue
        log(f"[{config.run_id}] {name} ...")
        start = time.perf_counter()
        getattr(stage_functions, name)(run)
        seconds = time.perf_counter() - start
        run.mark_done(name, seconds)
        for later in STAGES[STAGES.index(name) + 1 :]:  # what depended on it is now stale
            (run.dir / f".done-{later}").unlink(missing_ok=True)
        log(f"[{config.run_id}] {name}: {seconds:.1f}s")
    return run
