"""The steering engine's vocabulary: value ranges, edits, results and the errors it raises.

Plain frozen dataclasses (no numpy inside) so the routes can turn a result into JSON without
knowing the engine. The value ranges are explained in :mod:`backend.steering`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SCALE_MIN, SCALE_MAX = -10.0, 10.0
ABS_FACTOR = 10.0  # an absolute activation may reach ±10x the latent's largest observed one
MAX_EDITS = 32
TOP_N = 10
# Every user's unsteered ranking is kept to this depth (precomputed at load): "rank before" of a
# steered item is exact within it and reported as None (below the top BASE_DEPTH) beyond.
BASE_DEPTH = 50
# Ranking many users scores them in chunks of at most this many (user, item) scores (~32 MB).
CHUNK_ELEMS = 8_000_000


class SteerMode(StrEnum):
    ERROR_PRESERVING = "error_preserving"
    REPLACE = "replace"


class SteeringError(ValueError):
    """A request the engine cannot honour as asked (bad value, bad range): HTTP 422.

    ``latent``: the edited latent the problem is about, when there is one (the user page shows
    the refusal beside that latent's slider)."""

    def __init__(self, message: str, latent: int | None = None) -> None:
        super().__init__(message)
        self.latent = latent


class UnknownUserError(LookupError):
    """The user index is not part of the run: HTTP 404."""


class UnknownLatentError(LookupError):
    """The latent index is not part of the run's SAE: HTTP 404."""


class UnknownItemError(LookupError):
    """The item index is not part of the run: HTTP 404."""


@dataclass(frozen=True)
class Edit:
    latent: int
    value: float


@dataclass(frozen=True)
class RankedItem:
    rank: int  # 0-based position in the steered list
    idx: int
    score: float
    base_rank: int | None  # 0-based unsteered position; None: not in its top BASE_DEPTH

    @property
    def rank_change(self) -> int | None:
        """Positive = moved up (closer to the top) relative to the unsteered ranking."""
        return None if self.base_rank is None else self.base_rank - self.rank


@dataclass(frozen=True)
class EditReport:
    latent: int
    value: float
    kind: str  # "scale" (latent active for the user) or "absolute" (not active)
    activation_before: float
    activation_after: float
    concept: str | None  # the latent's TF-IDF concept, None when it has none
    presence_before: int | None  # how many of the unsteered top N carry the concept
    presence_after: int | None  # ... of the steered top N


@dataclass(frozen=True)
class SteerResult:
    user: int
    mode: SteerMode
    items: list[RankedItem]  # steered top N
    base_items: list[RankedItem]  # unsteered top N (base_rank == rank)
    entered: list[int]  # item idx in the steered top N but not in the base top N
    left: list[int]  # item idx in the base top N but not in the steered top N
    moved: list[tuple[int, int, int]]  # (item idx, base position, steered position), both lists
    edits: list[EditReport]
    test_item: int
    test_rank_before: int
    test_rank_after: int


# A 95% confidence interval (low, high) of a change; None where it cannot be estimated (fewer
# than two users). Bootstrap over users, seeded (backend.steering.segment).
Interval = tuple[float, float] | None


@dataclass(frozen=True)
class SegmentLatentReport:
    latent: int
    value: float
    concept: str | None
    n_active: int  # test-side users for whom the latent is active
    n_set: int  # test-side users whose activation of this latent the edit changed
    presence_before: float | None  # paper eq. 5 over users where the latent is active
    presence_after: float | None
    share_before: float | None  # mean share of the top N carrying the concept (active users)
    share_after: float | None
    presence_change_ci: Interval = None
    share_change_ci: Interval = None


@dataclass(frozen=True)
class SegmentResult:
    mode: SteerMode
    n_users: int
    n_affected: int  # users whose activations changed at all
    ndcg_before: float  # NDCG@N of the test item, mean over all test-side users
    ndcg_after: float
    ndcg_affected_before: float | None  # ... over the affected users only
    ndcg_affected_after: float | None
    latents: list[SegmentLatentReport]
    ndcg_change_ci: Interval = None  # 95% CI of ndcg_after - ndcg_before
    ndcg_affected_change_ci: Interval = None
    include_inactive: bool = False
