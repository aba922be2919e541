"""Model selection of the SAE trainer (docs/method.md §1.4): dev FVU decides among the checkpoints
the dev score does not veto; only the Pareto front of (dev FVU, dev score) is kept in memory.

The veto: with per-case scores and no fixed ``tolerance``, a checkpoint is vetoed when its mean
score is below the best checkpoint's by more than the 95% half-width of their paired per-case
difference (``paired_tolerance``); with a number, when it is more than that number below.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from worker.sae.model import TopKSAE

PAIRED_Z = 1.96  # the paired veto's two-sided 95% normal quantile


@dataclass
class _Checkpoint:
    epoch: int
    fvu_dev: float
    score: float  # -inf when there is no dev_score_fn, so only FVU decides
    state: dict[str, torch.Tensor]
    per_case: np.ndarray | None = None  # the score's per-case values, for the paired veto

    def covers(self, other: _Checkpoint) -> bool:
        """True if ``other`` can never win while self is kept (no lower FVU, no higher score)."""
        return self.fvu_dev <= other.fvu_dev and self.score >= other.score


def paired_tolerance(best: np.ndarray, other: np.ndarray) -> float:
    """95% half-width of the mean paired difference ``best - other`` (0 for < 2 cases)."""
    if len(best) != len(other):
        raise ValueError(f"paired scores need the same cases: {len(best)} vs {len(other)}")
    if len(best) < 2:
        return 0.0
    return float(PAIRED_Z * np.std(best - other, ddof=1) / np.sqrt(len(best)))


def _update_front(
    front: list[_Checkpoint],
    new: _Checkpoint,
    best_score: float,
    tol: float | None,
    best_per_case: np.ndarray | None = None,
) -> list[_Checkpoint]:
    """The Pareto front after adding ``new``, minus checkpoints the score vetoes: more than
    ``tol`` below the best score, or (``tol`` None) more than the paired 95% half-width."""
    if not any(c.covers(new) for c in front):
        front = [c for c in front if not new.covers(c)] + [new]

    def tolerance(c: _Checkpoint) -> float:
        if tol is not None:
            return tol
        if best_per_case is None or c.per_case is None:
            return 0.0
        return paired_tolerance(best_per_case, c.per_case)

    return [c for c in front if c.score >= best_score - tolerance(c) - 1e-12]


@dataclass
class _Selection:
    """Model selection over the evaluations: the Pareto front of (dev FVU, dev score)
    checkpoints within the score tolerance, the bests so far, and evaluations without a gain."""

    tolerance: float | None
    front: list[_Checkpoint] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_fvu: float = float("inf")
    best_score: float | None = None
    best_per_case: np.ndarray | None = None
    stale: int = 0

    def observe(
        self,
        sae: TopKSAE,
        epoch: int,
        steps: int,
        fvu_dev: float,
        score: float | np.ndarray | None,
    ) -> None:
        """Record one evaluation (``score``: a number, or per-case values whose mean is the
        score); a new best FVU or score resets the patience count."""
        per_case = None
        if score is not None and np.ndim(score) > 0:
            per_case = np.asarray(score, dtype=np.float64)
            score = float(per_case.mean())
        elif score is not None:
            score = float(score)
        if self.tolerance is None and score is not None and per_case is None:
            raise ValueError(
                "the paired veto (score_tolerance None) needs dev_score_fn to return per-case "
                "scores; return an array, or set SAEConfig.score_tolerance to a number"
            )
        self.history.append({"epoch": epoch, "steps": steps, "fvu_dev": fvu_dev, "score": score})
        improved = fvu_dev < self.best_fvu or (
            score is not None and (self.best_score is None or score > self.best_score)
        )
        self.best_fvu = min(self.best_fvu, fvu_dev)
        if score is not None and (self.best_score is None or score > self.best_score):
            self.best_score, self.best_per_case = score, per_case
        checkpoint = _Checkpoint(
            epoch,
            fvu_dev,
            score if score is not None else float("-inf"),
            copy.deepcopy(sae.state_dict()),
            per_case,
        )
        best_score = self.best_score if self.best_score is not None else float("-inf")
        self.front = _update_front(
            self.front, checkpoint, best_score, self.tolerance, self.best_per_case
        )
        self.stale = 0 if improved else self.stale + 1

    def veto_report(self, winner: _Checkpoint, scored: bool) -> dict[str, Any]:
        """The winner's dev score, the veto's kind and its tolerance at the winner, and how many
        evaluations with a lower dev FVU than the winner's it vetoed (docs/method.md §1.4)."""
        if not scored:
            return {"dev_score": None, "score_tolerance": None, "veto": None}
        return {
            "dev_score": winner.score,
            "score_tolerance": self.winner_tolerance(winner),
            "veto": "paired" if self.tolerance is None else "fixed",
            "vetoed_lower_fvu": sum(h["fvu_dev"] < winner.fvu_dev for h in self.history),
        }

    def winner_tolerance(self, winner: _Checkpoint) -> float | None:
        """The tolerance that applied to ``winner`` (None without a score)."""
        if self.best_score is None:
            return None
        if self.tolerance is not None:
            return self.tolerance
        if self.best_per_case is None or winner.per_case is None:
            return 0.0
        return paired_tolerance(self.best_per_case, winner.per_case)
