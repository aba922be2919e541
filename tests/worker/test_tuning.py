"""Targeted tuning (paper §8, eq. 5) on a 2-d example whose rankings are known by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest

from worker.interpret.tuning import TuningConfig, targeted_tuning

# items: 0 points along +x ("action"), 1 along +y ("comedy"), 2 along -x ("crime")
ITEM_EMB = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
TOKENS = [frozenset({"action"}), frozenset({"comedy"}), frozenset({"crime"})]
W_DEC = np.array([[1.0, 0.0], [0.0, 1.0]])  # latent 0 -> +x, latent 1 -> +y
B_DEC = np.zeros(2)
# case 0: z = {0: 1, 1: 2} -> x̂ = (1, 2); case 1: z = {0: 0.5} -> x̂ = (0.5, 0)
IDX = np.array([[0, 1], [0, 1]])
VAL = np.array([[1.0, 2.0], [0.5, 0.0]], np.float32)
CONCEPTS = {0: "action", 1: "comedy"}
CFG = TuningConfig(scales=(-10.0, 1.0, 10.0), top=1)
NO_KNOWN = [np.array([], np.int64), np.array([], np.int64)]


def test_presence_ratios_follow_the_scale() -> None:
    res = targeted_tuning(IDX, VAL, W_DEC, B_DEC, ITEM_EMB, NO_KNOWN, CONCEPTS, TOKENS, config=CFG)
    # latent 0, case 0: x' = (s, 2): s=-10 -> crime, 1 -> comedy, 10 -> action
    #           case 1: x' = (0.5 s, 0): -10 -> crime, 1 -> action, 10 -> action
    r0 = res.per_latent[0]
    assert r0["n_cases"] == 2 and r0["scales"] == [-10.0, 1.0, 10.0]
    assert r0["related"] == [0.0, 0.5, 1.0]
    assert r0["other"] == [0.0, 0.5, 0.0]  # "comedy"
    # latent 1 (active on case 0 only): x' = (1, 2 s): -10 -> action, 1 and 10 -> comedy
    r1 = res.per_latent[1]
    assert r1["n_cases"] == 1 and r1["related"] == [0.0, 1.0, 1.0] and r1["other"] == [1.0, 0, 0]
    assert res.summary["related"] == [0.0, 0.75, 1.0]
    assert res.summary["other"] == [0.5, 0.25, 0.0] and res.summary["n_latents"] == 2


def test_known_items_are_masked() -> None:
    known = [np.array([1]), np.array([], np.int64)]  # case 0 already has the comedy item
    res = targeted_tuning(IDX, VAL, W_DEC, B_DEC, ITEM_EMB, known, CONCEPTS, TOKENS, config=CFG)
    # latent 1, case 0: comedy masked -> action at every scale but -10 (-10: action too)
    assert res.per_latent[1]["related"] == [0.0, 0.0, 0.0]


def test_case_mask_subsampling_and_error_preserving() -> None:
    only0 = np.array([True, False])
    res = targeted_tuning(
        IDX,
        VAL,
        W_DEC,
        B_DEC,
        ITEM_EMB,
        NO_KNOWN,
        {0: "action"},
        TOKENS,
        case_mask=only0,
        config=CFG,
    )
    assert res.per_latent[0]["n_cases"] == 1 and res.per_latent[0]["related"] == [0, 0, 1]
    assert res.per_latent[0]["other"] == [None, None, None]  # no other concept
    sub = targeted_tuning(
        IDX,
        VAL,
        W_DEC,
        B_DEC,
        ITEM_EMB,
        NO_KNOWN,
        CONCEPTS,
        TOKENS,
        config=TuningConfig(scales=(1.0,), top=1, max_cases=1, seed=3),
    )
    assert sub.per_latent[0]["n_cases"] == 1
    # error-preserving with x = (1, 2.5): the residual (0, 0.5) keeps comedy on top at s = 1
    x = np.array([[1.0, 2.5], [0.5, 0.0]])
    ep = targeted_tuning(
        IDX,
        VAL,
        W_DEC,
        B_DEC,
        ITEM_EMB,
        NO_KNOWN,
        CONCEPTS,
        TOKENS,
        x=x,
        config=TuningConfig(scales=(-10.0, 1.0, 10.0), top=1, mode="error_preserving"),
    )
    assert ep.per_latent[0]["related"] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="needs x"):
        targeted_tuning(
            IDX,
            VAL,
            W_DEC,
            B_DEC,
            ITEM_EMB,
            NO_KNOWN,
            CONCEPTS,
            TOKENS,
            config=TuningConfig(mode="error_preserving"),
        )


def test_runs_fast_on_realistic_sizes() -> None:
    rng = np.random.default_rng(0)
    C, k, n, d, n_items, n_concepts = 600, 8, 1024, 64, 2000, 50
    idx = (rng.integers(0, n, (C, 1)) + 127 * np.arange(k)) % n
    val = rng.exponential(size=(C, k)).astype(np.float32)
    W_dec = rng.normal(size=(n, d)) / 8
    item_emb = rng.normal(size=(n_items, d))
    tokens = [frozenset({f"t{rng.integers(n_concepts)}"}) for _ in range(n_items)]
    concepts = {lat: f"t{lat % n_concepts}" for lat in range(0, n, 10)}  # ~100 latents
    known = [rng.integers(0, n_items, 30) for _ in range(C)]
    start = time.perf_counter()
    res = targeted_tuning(idx, val, W_dec, np.zeros(d), item_emb, known, concepts, tokens)
    elapsed = time.perf_counter() - start
    assert len(res.per_latent) == len(concepts) and len(res.summary["related"]) == 13
    assert elapsed < 15, elapsed


def test_item_share_counts_the_items_of_the_list() -> None:
    # top 2 of 3 items: latent 0, case 0 at s=10: x' = (10, 2) -> action, comedy (share 1/2)
    cfg = TuningConfig(scales=(-10.0, 1.0, 10.0), top=2)
    res = targeted_tuning(IDX, VAL, W_DEC, B_DEC, ITEM_EMB, NO_KNOWN, CONCEPTS, TOKENS, config=cfg)
    r0 = res.per_latent[0]
    # case 0: s=-10 (-10, 2) -> comedy, crime; s=1 (1, 2) -> comedy, action; s=10 -> action, comedy
    # case 1: s=-10 (-5, 0) -> crime + a tie; s=1, 10 -> action + a tie
    assert r0["related_share"][0] == 0.0 and r0["related_share"][2] == pytest.approx(0.5)
    assert all(0.0 <= v <= 1.0 for v in r0["related_share"] + r0["other_share"])
    assert res.summary["related_share"][0] <= res.summary["related_share"][2]
