"""The output check (docs/method.md §1.9, "Output check") against a brute-force numpy oracle on
a tiny synthetic run: a planted latent whose decoder direction promotes its concept's items is
confirmed; one whose direction moves every item's score alike (unrelated to the concept) and one
that works against its concept are not; the modes and "too few" follow the number of users;
the intervals are of the per-user (paired) change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from worker.interpret.output_check import (
    ACTIVE,
    CONFIRMED,
    INACTIVE_SET,
    REFUTED,
    TOO_FEW,
    OutputCheckConfig,
    output_check,
    paired_bootstrap,
    resample_counts,
    summary,
)

N_ITEMS, D, TOP = 60, 6, 10
HORROR = np.arange(12)  # items 0..11 carry "horror"


def _world(n_users: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N_ITEMS, D))
    emb[:, -1] = 1.0  # a constant feature: a direction along it moves every score alike
    tokens = [frozenset({"horror", "film"}) if i in HORROR else frozenset({"comedy"}) for i in
              range(N_ITEMS)]  # fmt: skip
    horror_dir = emb[HORROR, :-1].mean(axis=0) - emb[12:, :-1].mean(axis=0)
    directions = np.zeros((4, D))
    directions[0, :-1] = horror_dir  # planted: raises horror items' scores
    directions[1, -1] = 1.0  # unrelated: the same shift for every item
    directions[2, :-1] = -horror_dir  # against its label
    directions[3, :-1] = horror_dir
    # latents 0 and 2 active for every user, latent 1 for 5 users, latent 3 for nobody
    idx = np.tile(np.array([[0, 2, 1]]), (n_users, 1))
    val = np.column_stack(
        [rng.uniform(0.5, 1.5, n_users), rng.uniform(0.5, 1.5, n_users),
         np.where(np.arange(n_users) < 5, 1.0, 0.0)]
    )  # fmt: skip
    known = [rng.choice(N_ITEMS, size=3, replace=False) for _ in range(n_users)]
    return {
        "base_vectors": rng.normal(size=(n_users, D)), "latent_idx": idx, "latent_val": val,
        "directions": directions, "mean_activation": np.array([1.0, 1.0, 1.0, 2.0]),
        "item_emb": emb, "known_items": known, "item_tokens": tokens,
    }  # fmt: skip


def _oracle(w: dict, latent: int, text_items: np.ndarray, scale: float, users: np.ndarray):
    """Per-user concept share of the full-sort top 10 before and after z_l -> scale·z_l (or
    scale × mean activation where inactive), one user at a time."""
    before, after = [], []
    for u in users:
        z = float(w["latent_val"][u][w["latent_idx"][u] == latent].sum())
        z2 = scale * z if z > 0 else scale * w["mean_activation"][latent]
        for vec, out in (
            (w["base_vectors"][u], before),
            (w["base_vectors"][u] + (z2 - z) * w["directions"][latent], after),
        ):
            scores = w["item_emb"] @ vec
            scores[w["known_items"][u]] = -np.inf
            top = np.argsort(-scores)[:TOP]
            out.append(np.isin(top, text_items).mean())  # fmt: skip
    return np.array(before), np.array(after)


def test_planted_latent_is_confirmed_and_unrelated_ones_are_not() -> None:
    w = _world(40)
    concepts = {0: "horror", 1: "horror", 2: "horror film", 3: "horror"}
    checks = output_check(**w, concepts=concepts, config=OutputCheckConfig(seed=7))
    assert checks[0]["verdict"] == CONFIRMED and checks[0]["mode"] == ACTIVE
    assert checks[1]["verdict"] == REFUTED and checks[1]["mode"] == INACTIVE_SET
    assert checks[1]["boosted_ci"] == [0.0, 0.0]  # every score moved alike: the same top 10
    assert checks[2]["verdict"] == REFUTED  # boosting lowers its concept's share
    assert checks[2]["boosted_change"] < 0 < checks[2]["suppressed_change"]
    assert checks[3]["mode"] == INACTIVE_SET and checks[3]["n_active"] == 0
    for lat in (0, 1, 2, 3):
        c = checks[lat]
        users = np.arange(40)  # latents 0 and 2: active for all; 1 and 3: inactive_set
        before, boosted = _oracle(w, lat, HORROR, 5.0, users)
        _, suppressed = _oracle(w, lat, HORROR, -5.0, users)
        assert c["n_users"] == len(users)
        assert c["share_before"] == pytest.approx(before.mean())
        assert c["share_boosted"] == pytest.approx(boosted.mean())
        assert c["share_suppressed"] == pytest.approx(suppressed.mean())
        assert c["boosted_change"] == pytest.approx((boosted - before).mean())
        lo, hi = c["boosted_ci"]
        assert lo <= c["boosted_change"] <= hi
    assert checks[0]["share_boosted"] > checks[0]["share_before"] > checks[0]["share_suppressed"]


def test_modes_and_too_few() -> None:
    w = _world(40)
    w["latent_val"][25:, 0] = 0.0  # latent 0 active for 25 users: still >= 20
    checks = output_check(**w, concepts={0: "horror"})
    assert checks[0]["mode"] == ACTIVE and checks[0]["n_users"] == 25
    w["latent_val"][19:, 0] = 0.0  # 19 active: every user, inactive ones set to 5 x mean
    checks = output_check(**w, concepts={0: "horror"})
    assert checks[0]["mode"] == INACTIVE_SET and checks[0]["n_users"] == 40
    before, boosted = _oracle(w, 0, HORROR, 5.0, np.arange(40))
    assert checks[0]["share_boosted"] == pytest.approx(boosted.mean())
    small = _world(15)
    checks = output_check(**small, concepts={0: "horror", 3: "horror"})
    assert checks[0]["verdict"] == TOO_FEW == checks[3]["verdict"]
    assert "share_before" not in checks[0]


def test_the_interval_is_of_the_paired_change() -> None:
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 1, 200)  # widely spread levels, the same small change for everyone
    changes = np.stack([np.full(200, 0.1), before * 0 - 0.1])
    (b_lo, b_hi), (s_lo, s_hi) = paired_bootstrap(changes, resample_counts(200, 1000, 1))
    assert (b_lo, b_hi) == pytest.approx((0.1, 0.1)) and (s_lo, s_hi) == pytest.approx((-0.1, -0.1))
    noisy = rng.normal(0.05, 0.2, size=(1, 300))
    ((lo, hi),) = paired_bootstrap(noisy, resample_counts(300, 4000, 2))
    ref = stats.bootstrap((noisy[0],), np.mean, n_resamples=4000, method="percentile",
                          random_state=3).confidence_interval  # fmt: skip
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    counts = resample_counts(50, 100, 7)
    assert counts.shape == (100, 50) and (counts.sum(axis=1) == 50).all()


def test_summary_counts_verified_concepts_only() -> None:
    checks = {
        1: {"verdict": CONFIRMED, "mode": ACTIVE},
        2: {"verdict": REFUTED, "mode": INACTIVE_SET},
        3: {"verdict": CONFIRMED, "mode": INACTIVE_SET},
        4: {"verdict": TOO_FEW, "mode": INACTIVE_SET},
    }
    s = summary(checks, verified=[1, 2, 4])
    assert (s["verified"], s["verified_confirmed"], s["confirmed_share"]) == (3, 1, 1 / 3)
    assert s["verdicts"] == {CONFIRMED: 2, REFUTED: 1, TOO_FEW: 1}
    assert summary(checks, verified=[])["confirmed_share"] is None
