"""The demo's pipelines, run behind the explorer (``recsae demo``): each model's run is published
first with its TF-IDF concepts, and its LLM labels (with their nulls) land last as a new
published version, after every model's first version (docs/architecture.md, progress).

The first pass runs the model's config with ``llm_latents = 0`` (explain_llm skips); the second
runs the real config, whose changed ``llm_latents`` reruns explain_llm and the stages after it
(evaluate, sweep, publish) only. A run whose real config is already finished skips the first
pass, so a second demo recomputes nothing. One progress file per run follows both passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from core.progress import ProgressTracker, Step
from core.settings import Settings
from worker.pipeline import pending_stages, run_pipeline
from worker.run import STAGES, RunConfig

TFIDF_PART = "TF-IDF concepts"
LLM_PART = "LLM labels"
# the stages the LLM pass reruns: explain_llm and what reads its concepts
LLM_STAGES = STAGES[STAGES.index("explain_llm") :]


def plan(config: RunConfig, first_pass: bool) -> list[Step]:
    """The steps of one demo run: the TF-IDF pass (if it runs) then the LLM pass."""
    if config.llm_latents <= 0:
        return [Step(stage=s, part=TFIDF_PART if s == "publish" else "") for s in STAGES]
    llm = [Step(stage=s, part=LLM_PART) for s in LLM_STAGES]
    if not first_pass:
        return [*(Step(stage=s) for s in STAGES[: -len(LLM_STAGES)]), *llm]
    tfidf = [Step(stage=s, part=TFIDF_PART if s == "publish" else "") for s in STAGES]
    return [*tfidf, *llm]


def run_demo(
    configs: Sequence[RunConfig],
    settings: Settings,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """Every config's TF-IDF pass in order, then every config's LLM pass in order.

    A failure stops that run (its progress file says why) and the others go on; the first
    failure is raised at the end, so the command exits non-zero.
    """
    passes: list[tuple[RunConfig, ProgressTracker, bool]] = []
    for config in configs:
        # nothing to compute for the real config (a second demo): no TF-IDF-only version first
        finished = not force and pending_stages(config, settings) == ["publish"]
        first_pass = config.llm_latents > 0 and not finished
        tracker = ProgressTracker(settings.data_dir, config.run_id, plan(config, first_pass))
        tracker.queued()
        passes.append((config, tracker, first_pass))
    failed: list[BaseException] = []
    later: list[tuple[RunConfig, ProgressTracker]] = []
    for config, tracker, first_pass in passes:
        first = replace(config, llm_latents=0) if first_pass else config
        try:
            run_pipeline(first, settings, force=force, log=log, progress=tracker)
        except Exception as err:  # the progress file has the reason; the next model goes on
            log(f"[{config.run_id}] failed: {err}")
            failed.append(err)
            continue
        if first_pass:
            tracker.queued()  # its LLM pass waits for the other runs' first versions
            later.append((config, tracker))
        else:
            tracker.done()
    for config, tracker in later:
        try:
            # not forced: the changed llm_latents already reruns explain_llm and what follows
            run_pipeline(config, settings, stages=LLM_STAGES, log=log, progress=tracker)
        except Exception as err:
            log(f"[{config.run_id}] failed: {err}")
            failed.append(err)
            continue
        tracker.done()
    if failed:
        raise failed[0]
