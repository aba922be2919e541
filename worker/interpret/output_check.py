"""The output-side check of a concept (docs/method.md §1.9, "Output check"): does steering the
latent move its concept's share in the top 10 the way the label says?

For one latent l with concept c, on the evaluation users (one case each, §1.7):

- **active** mode, when l is active for at least ``min_users`` of them: on those users, replace
  l's activation z by σ·z (σ = +5 and −5), decode, rerank;
- **inactive_set** mode otherwise: on every evaluation user, as segment steering's "include
  inactive" does (§1.10): an active user's activation is scaled (σ·z), an inactive user's is set
  to σ × l's mean non-zero activation.

The change of one user's vector is rank one, ``(z′ − z) · direction_l`` (the SAE: W_dec[l], so
the steered vector is the replace mode's W_dec z′ + b_dec when the base vector is x̂), so every
item's score moves by ``(z′ − z) · (direction_l · e_i)``: the unsteered scores are computed once
for all users and each latent adds one outer product per scale.

Per user u the concept's share of the top 10 is ``#{i ∈ top10 : c ∈ tok(i)} / 10`` (presence as
in Table 8: every token of c among the item's verification tokens). The changes boosted − before
and suppressed − before are paired by user; one percentile bootstrap over users (the same
resampled users for both, and for every check on the same users, seeded with the run's seed)
gives their 95% intervals. Verdict: ``confirmed`` when boosting raises
the share and suppressing lowers it, both intervals excluding 0; ``too_few`` when fewer than
``min_users`` users could be used at all; ``refuted`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.text import analyze

CONFIRMED, REFUTED, TOO_FEW = "confirmed", "refuted", "too_few"
OUTPUT_VERDICTS = (CONFIRMED, REFUTED, TOO_FEW)
ACTIVE, INACTIVE_SET = "active", "inactive_set"


@dataclass
class OutputCheckConfig:
    scale: float = 5.0  # boost at +scale, suppress at -scale (replace mode)
    top: int = 10  # length of the list the concept's share is counted in
    min_users: int = 20  # fewer active users: inactive_set mode; fewer users at all: too_few
    n_resamples: int = 1000  # bootstrap draws (users resampled with replacement)
    seed: int = 0  # the run's seed


def concept_masks(
    item_tokens: Sequence[frozenset[str]] | Sequence[set[str]], texts: Sequence[str]
) -> np.ndarray:
    """[n_items, len(texts)] bool: every token of the text is among the item's tokens (a text
    with no token is present nowhere; the steering engine's ``concept_mask`` test)."""
    postings: dict[str, list[int]] = {}
    for i, toks in enumerate(item_tokens):
        for t in toks:
            postings.setdefault(t, []).append(i)
    out = np.zeros((len(item_tokens), len(texts)), dtype=bool)
    for j, text in enumerate(texts):
        tokens = set(analyze(text))
        if tokens:
            out[:, j] = True
            for t in tokens:
                has = np.zeros(len(item_tokens), dtype=bool)
                has[postings.get(t, [])] = True
                out[:, j] &= has
    return out


def _top(scores: np.ndarray, top: int) -> np.ndarray:
    """[b, top] indices of each row's ``top`` largest scores (any order)."""
    kth = scores.shape[1] - top
    return np.argpartition(scores, kth, axis=1)[:, kth:]


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n] how often each of n users is drawn in each bootstrap resample (n draws
    with replacement), seeded by (seed, n): every check on the same n users shares them."""
    rng = np.random.default_rng([seed, n])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)


def paired_bootstrap(changes: np.ndarray, counts: np.ndarray) -> list[tuple[float, float]]:
    """95% percentile intervals of the mean of each row of ``changes`` [m, n] over the resamples
    ``counts`` [B, n] (:func:`resample_counts`): one draw of users serves every row (paired)."""
    means = changes @ counts.T / changes.shape[1]  # [m, B]
    lo, hi = np.percentile(means, [2.5, 97.5], axis=1)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def output_check(
    base_vectors: np.ndarray,
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    directions: np.ndarray,
    mean_activation: np.ndarray,
    item_emb: np.ndarray,
    known_items: Sequence[np.ndarray],
    concepts: Mapping[int, str],
    item_tokens: Sequence[frozenset[str]] | Sequence[set[str]],
    config: OutputCheckConfig | None = None,
) -> dict[int, dict[str, Any]]:
    """The output check of every latent in ``concepts`` ({latent: concept text}).

    base_vectors [U, d] the unsteered vector of each evaluation user (x̂ = W_dec z + b_dec for
    the SAE's replace mode); latent_idx / latent_val [U, k] their codes; directions [n, d] the
    change of the vector per unit of each latent; mean_activation [n] each latent's mean non-zero
    activation; item_emb [n_items, d]; known_items[u] the items masked for u (its history).
    Returns {latent: record} with the verdict, mode, n_users, the three shares, both changes and
    their 95% intervals.
    """
    config = config or OutputCheckConfig()
    U, d = base_vectors.shape
    n_items = item_emb.shape[0]
    if latent_idx.shape != latent_val.shape or latent_idx.shape[0] != U:
        raise ValueError(f"codes {latent_idx.shape} / {latent_val.shape} do not fit {U} users")
    if directions.shape[1] != d or item_emb.shape[1] != d:
        raise ValueError(f"directions {directions.shape} / item_emb {item_emb.shape}: d = {d}")
    if len(known_items) != U or len(item_tokens) != n_items:
        raise ValueError(
            f"known_items ({len(known_items)}) must have one entry per user ({U}) and "
            f"item_tokens ({len(item_tokens)}) one per item ({n_items})"
        )
    if not 1 <= config.top <= n_items:
        raise ValueError(f"top must be in [1, {n_items}], got {config.top}")
    latents = sorted(concepts)
    texts = [concepts[lat] for lat in latents]
    masks = concept_masks(item_tokens, texts)  # [n_items, L]
    emb = item_emb.astype(np.float32)
    scores0 = (base_vectors.astype(np.float32) @ emb.T).astype(np.float32)  # [U, n_items]
    rows = np.repeat(np.arange(U), [len(k) for k in known_items])
    cols = np.concatenate([np.asarray(k, np.int64) for k in known_items]) if U else rows
    scores0[rows, cols] = -np.inf  # the user's history is never recommended
    top0 = _top(scores0, config.top)  # [U, top]
    counts: dict[int, np.ndarray] = {}  # bootstrap resamples per number of users
    scales = np.array([config.scale, -config.scale], dtype=np.float32)
    out: dict[int, dict[str, Any]] = {}
    for j, lat in enumerate(latents):
        z = (latent_val * (latent_idx == lat)).sum(axis=1).astype(np.float32)  # [U]
        active = z > 0
        if int(active.sum()) >= config.min_users:
            mode, users = ACTIVE, np.flatnonzero(active)
        else:
            mode, users = INACTIVE_SET, np.arange(U)
        record: dict[str, Any] = {
            "concept": concepts[lat], "mode": mode, "n_users": int(len(users)),
            "n_active": int(active.sum()), "scale": config.scale,
        }  # fmt: skip
        out[lat] = record
        if len(users) < config.min_users:
            record |= {"verdict": TOO_FEW}
            continue
        mask = masks[:, j]
        zu = z[users]
        # z' - z per scale and user: sigma*z - z when active, sigma*mean - 0 when not (§1.10)
        target = np.where(
            zu[None, :] > 0, scales[:, None] * zu, scales[:, None] * mean_activation[lat]
        )
        delta = target - zu[None, :]  # [2, b]
        effect = (emb @ directions[lat].astype(np.float32)).astype(np.float32)  # [n_items]
        before = mask[top0[users]].mean(axis=1)  # [b]
        shares = np.empty((2, len(users)))
        for s in range(2):
            steered = scores0[users] + delta[s][:, None] * effect[None, :]
            shares[s] = mask[_top(steered, config.top)].mean(axis=1)
        changes = shares - before[None, :]  # [2, b]: boosted - before, suppressed - before
        n = len(users)
        if n not in counts:
            counts[n] = resample_counts(n, config.n_resamples, config.seed)
        (b_lo, b_hi), (s_lo, s_hi) = paired_bootstrap(changes, counts[n])
        confirmed = b_lo > 0 and s_hi < 0
        record |= {
            "verdict": CONFIRMED if confirmed else REFUTED,
            "share_before": float(before.mean()),
            "share_boosted": float(shares[0].mean()),
            "share_suppressed": float(shares[1].mean()),
            "boosted_change": float(changes[0].mean()),
            "boosted_ci": [b_lo, b_hi],
            "suppressed_change": float(changes[1].mean()),
            "suppressed_ci": [s_lo, s_hi],
        }
    return out


def summary(checks: Mapping[int, Mapping[str, Any]], verified: Sequence[int]) -> dict[str, Any]:
    """The run report's line (docs/method.md §1.9): of the verified concepts, how many are
    confirmed on output (``confirmed_share``: None when none is verified), and the verdicts and
    modes over every checked concept."""
    among = [checks[lat]["verdict"] for lat in verified if lat in checks]
    confirmed = sum(v == CONFIRMED for v in among)
    every = [c["verdict"] for c in checks.values()]
    return {
        "verified": len(among),
        "verified_confirmed": confirmed,
        "confirmed_share": confirmed / len(among) if among else None,
        "checked": len(every),
        "verdicts": {v: sum(x == v for x in every) for v in OUTPUT_VERDICTS},
        "modes": {m: sum(c["mode"] == m for c in checks.values()) for m in (ACTIVE, INACTIVE_SET)},
    }
