"""explain_llm (paper §3.3): LLM concepts for the first ``llm_latents`` latents worth explaining,
through the configured OpenAI-compatible endpoint or the bundled local model."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from core.llm.client import LLMClient, LLMNotConfigured
from core.llm.concepts import (
    ItemLookup,
    LatentCases,
    LLMConceptConfig,
    RawCase,
    explain_latents,
)
from core.llm.null import llm_null
from core.llm.prompts import (
    FewShot,
    PromptContext,
    choose_fewshot,
    fewshot_answer,
    label_vocabulary,
    oneshot_kind,
)
from core.llm.server import LocalLLM
from core.net import free_port
from core.reports import details_null_p, is_confident, is_verified
from core.rundir import LLM_CONCEPTS
from core.settings import Settings
from worker.artifacts import save_llm_concepts
from worker.interpret.examples import ExampleSet, example_history
from worker.interpret.tfidf import descriptive_text
from worker.run import Run


def llm_latent_cases(run: Run) -> list[LatentCases]:
    """Every latent's recorded examples as the LLM prompts see them (real histories, docs/method.md
    §3)."""
    dataset, cases = run.dataset, run.probe.cases
    part = run.interpretation.sae
    examples = part.examples
    items = ItemLookup(
        dataset.item_title,
        dataset.item_genres,
        descriptive_text(dataset, run.config.tfidf_title_words),  # the vocabulary's terms
    )

    def raw(ex: ExampleSet, lat: int) -> list[RawCase]:
        return [
            (example_history(dataset, cases, int(ex.case[lat, slot])).tolist(),
             int(ex.item[lat, slot]), int(ex.level[lat, slot]))
            for slot in np.flatnonzero(ex.case[lat] >= 0)
        ]  # fmt: skip

    return [
        LatentCases.from_ids(
            lat,
            items,
            raw(examples.construction, lat),
            raw(examples.verification, lat),
            raw(examples.random, lat),
            too_rare=bool(examples.too_rare[lat]),
        )  # fmt: skip
        for lat in range(part.n_latents)
    ]


def llm_priority(run: Run) -> list[int]:
    """The order in which latents get an LLM explanation: the verifiable ones (enough
    verification cases) first, then the too-rare ones, each in a seeded random order; dead
    latents never. Not by TF-IDF confidence: that is measured on the verification cases, so
    choosing by it would pick the latents whose verification cases happen to look good, and the
    LLM's verified count would carry that selection (docs/method.md §1.8)."""
    part = run.interpretation.sae
    too_rare = part.examples.too_rare
    rng = np.random.default_rng([run.config.seed, 1_000_003])
    order = rng.permutation(part.n_latents)
    order = order[np.argsort(too_rare[order], kind="stable")]  # verifiable first, order kept
    return [int(i) for i in order if not part.statistics.dead[i]]


def fewshot_examples(
    run: Run, cases: list[LatentCases], ctx: PromptContext, n: int
) -> tuple[FewShot, ...]:
    """Few-shot examples for the explanation prompts (docs/method.md §1.8): latents whose TF-IDF
    concept is verified (confidence and null, ``core.reports.is_verified``), answered with that
    concept, a seeded choice. Each prompt leaves out the explained latent's own example."""
    by_id = {lc.latent_id: lc for lc in cases}
    candidates = []
    for concept in run.interpretation.sae.concepts:
        lc = by_id.get(concept.latent)
        if lc is None or not concept.text:
            continue
        if not is_verified(concept.confidence, details_null_p(concept.details)):
            continue
        shown = tuple(lc.construction[:n])
        vocabulary = lc.vocabulary
        if vocabulary is None:
            vocabulary = label_vocabulary(shown, ctx.history_len)
        answer = fewshot_answer(concept.text, ctx)
        candidates.append(FewShot(lc.latent_id, shown, vocabulary, answer))
    return choose_fewshot(candidates, seed=run.config.seed)


def _llm_settings(run: Run, stack: contextlib.ExitStack) -> Settings:
    """The run's settings, pointed at the bundled local LLM (started in ``stack``) if asked for."""
    settings = run.settings
    if settings.llm_base_url is not None:
        return settings
    if not run.config.llm_local:
        raise LLMNotConfigured(
            "LLM concepts were asked for (llm_latents > 0) but no LLM is configured: set "
            "RECSAE_LLM_BASE_URL to an OpenAI-compatible endpoint, or pass --llm-local "
            "to start the bundled SmolLM2 server"
        )
    server = stack.enter_context(LocalLLM(port=free_port(), threads=2))
    run.log(f"  started the local LLM at {server.base_url}")
    return settings.model_copy(update={"llm_base_url": server.base_url, "llm_model": server.alias})


def explain_llm(run: Run) -> None:
    cfg = run.config
    if cfg.llm_latents <= 0:
        run.path(LLM_CONCEPTS).unlink(missing_ok=True)
        run.llm_concepts = []
        run.log("  skipped (llm_latents = 0)")
        return
    dataset = run.dataset
    with contextlib.ExitStack() as stack:
        client = LLMClient.from_settings(_llm_settings(run, stack))
        ctx = PromptContext(
            item_category=dataset.item_category, item_name=dataset.item_name,
            oneshot=oneshot_kind(cfg.dataset_name),
        )  # fmt: skip
        chosen = set(llm_priority(run)[: cfg.llm_latents])
        every = llm_latent_cases(run)
        latents = [lc for lc in every if lc.latent_id in chosen]
        config = LLMConceptConfig(n=cfg.n_examples)
        shots = fewshot_examples(run, every, ctx, config.n)
        ctx = dataclasses.replace(ctx, examples=shots)
        run.log(f"  few-shot examples: latents {[s.latent_id for s in shots]}")
        concepts = explain_latents(latents, client, ctx, config)
        # docs/method.md §1.11: each confidence beside other explanations' on the same cases
        llm_null(concepts, latents, client, ctx, config, size=cfg.llm_null, seed=cfg.seed)
        if client.cache is not None:
            run.log(
                f"  LLM cache: {client.cache.stats.hits} hits, {client.cache.stats.misses} misses"
            )
    save_llm_concepts(run.dir, concepts)
    run.llm_concepts = concepts
    n_conf = sum(is_confident(c.confidence) for c in concepts)
    n_ok = sum(is_verified(c.confidence, details_null_p(c.details)) for c in concepts)
    run.log(
        f"  LLM concepts: {len(concepts)} latents explained, {n_conf} with confidence >= 0.8, "
        f"{n_ok} of them also reject their null (p <= 0.05, n >= 19)"
    )
