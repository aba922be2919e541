"""Which latents the LLM explains (docs/method.md §1.8): a seeded random order, verifiable
latents first, never dead ones, and never chosen by the TF-IDF confidence measured on the very
verification cases the LLM's label is then verified on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from worker.stages.explain_llm import llm_priority


def _run(seed: int, confidence: list[float | None]) -> SimpleNamespace:
    n = len(confidence)
    too_rare = np.array([i % 5 == 0 for i in range(n)])
    dead = np.array([i == n - 1 for i in range(n)])
    part = SimpleNamespace(
        n_latents=n,
        examples=SimpleNamespace(too_rare=too_rare),
        statistics=SimpleNamespace(dead=dead, density=np.linspace(0.1, 0.01, n)),
        concepts=[SimpleNamespace(confidence=c) for c in confidence],
    )
    return SimpleNamespace(
        interpretation=SimpleNamespace(sae=part), config=SimpleNamespace(seed=seed)
    )


def test_order_is_seeded_random_verifiable_first_and_ignores_the_confidence() -> None:
    n = 40
    by_conf = [i / n for i in range(n)]  # the best confidences on the last latents
    order = llm_priority(_run(7, by_conf))  # type: ignore[arg-type]
    assert sorted(order) == list(range(n - 1))  # every latent but the dead one
    split = sum(1 for i in range(n - 1) if i % 5 != 0)
    assert all(i % 5 != 0 for i in order[:split]) and all(i % 5 == 0 for i in order[split:])
    assert order == llm_priority(_run(7, list(reversed(by_conf))))  # type: ignore[arg-type]
    assert order != llm_priority(_run(8, by_conf))  # type: ignore[arg-type]
    # not the confidence order: the 10 most confident verifiable latents are not the first 10
    top = sorted((i for i in range(n - 1) if i % 5), key=lambda i: -by_conf[i])[:10]
    assert order[:10] != top
