"""Why this item: an item's score split into the SAE's parts, numpy only (docs/method.md §6.4).

A recommender here scores item i for a user as s_i = x' · e_i, with no item bias (every
recommender's ``score`` is the user representation times the item embeddings), where x' is the
vector the list was ranked with. The SAE writes any vector as x = Σ_l z_l W_dec[l] + b_dec +
(x − x̂), x̂ = decode(z), so with the edited code z':

- error-preserving: x' = x + (z' − z) W_dec = Σ_l z'_l W_dec[l] + b_dec + (x − x̂)
- replace: x' = decode(z') = Σ_l z'_l W_dec[l] + b_dec (no error term)

and s_i = Σ_l z'_l (W_dec[l] · e_i) + b_dec · e_i + (x − x̂) · e_i. The parts are computed in
float64, independently of the float32 score the list shows, so a test that they add up to it
checks the decomposition rather than restating it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backend.steering.types import Edit, SteerMode, UnknownItemError

if TYPE_CHECKING:
    from backend.steering.engine import SteeringEngine


@dataclass(frozen=True)
class LatentPart:
    latent: int
    activation: float  # z'_l, the (possibly edited) activation
    contribution: float  # z'_l (W_dec[l] · e_i)
    concept: str | None  # the latent's TF-IDF concept


@dataclass(frozen=True)
class ItemWhy:
    idx: int
    score: float  # x' · e_i as the list ranks it (float32 arithmetic)
    latents: list[LatentPart]  # the non-zero latents of z', largest |contribution| first
    bias: float  # b_dec · e_i
    error: float  # (x − x̂) · e_i; 0 in replace mode
    item_bias: float  # the recommender's own item bias: 0 (scores are x · e_i)

    @property
    def total(self) -> float:
        """The sum of every part (equal to ``score`` up to float32 rounding)."""
        return sum(p.contribution for p in self.latents) + self.bias + self.error + self.item_bias


def explain_items(
    engine: SteeringEngine,
    user: int,
    edits: Sequence[Edit],
    mode: SteerMode | str,
    items: Sequence[int],
    shown: Sequence[float] | None = None,
) -> list[ItemWhy]:
    """Each of ``items``' scores for ``user`` (after ``edits`` in ``mode``) split into parts.

    ``shown``: the scores a list shows for ``items`` (a baseline list ranks all users in one
    batch, whose float32 sums may differ from one vector's in the last bits); computed when
    None. Raises like :meth:`SteeringEngine.steer`, and :class:`UnknownItemError` for an item index
    outside the run.
    """
    mode = SteerMode(mode)
    for i in items:
        if not 0 <= i < engine.n_items:
            raise UnknownItemError(
                f"run {engine.run_id!r} has no item {i} (items are 0..{engine.n_items - 1})"
            )
    x, z, z2, x2 = engine.steered_code(user, edits, mode)
    idx = np.asarray(items, dtype=np.int64)
    E = np.asarray(engine.item_embeddings[idx], dtype=np.float64)  # [m, d]
    scores = engine.item_embeddings[idx] @ x2 if shown is None else np.asarray(shown)  # [m]
    b_dec = np.asarray(engine.b_dec, dtype=np.float64)
    active = np.flatnonzero(z2)
    W = np.asarray(engine.W_dec[active], dtype=np.float64)  # [A, d]
    za = np.asarray(z2[active], dtype=np.float64)
    parts = za[:, None] * (W @ E.T)  # [A, m]
    if mode is SteerMode.REPLACE:
        error = np.zeros(len(idx))
    else:
        on = np.flatnonzero(z)
        x_hat = np.asarray(z[on], np.float64) @ np.asarray(engine.W_dec[on], np.float64) + b_dec
        error = E @ (np.asarray(x, dtype=np.float64) - x_hat)
    bias = E @ b_dec
    concepts = engine.text.tfidf_concepts
    out = []
    for j, i in enumerate(idx):
        order = np.argsort(-np.abs(parts[:, j]), kind="stable")
        out.append(
            ItemWhy(
                idx=int(i),
                score=float(scores[j]),
                latents=[
                    LatentPart(
                        latent=int(active[a]),
                        activation=float(za[a]),
                        contribution=float(parts[a, j]),
                        concept=concepts[int(active[a])],
                    )
                    for a in order
                ],
                bias=float(bias[j]),
                error=float(error[j]),
                item_bias=0.0,
            )
        )
    return out
