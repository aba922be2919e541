"""Live steering (docs/method.md §1.10, the product's version of paper §8 / Table 8), numpy only.

A :class:`SteeringEngine` (:mod:`.engine`) holds one run's arrays in memory: the SAE (SAELens
layout, loaded by :mod:`core.rundir`), the item embeddings, the user vectors at the test
position, every user's known items and the items' tokens for concept matching (:mod:`.text`,
built from :func:`core.store.reads.steering_rows`). It is built once per run and shared by
every request through :func:`engine_for_run` (:mod:`.cache`, a process-wide, thread-safe
cache), so a steering request is a handful of BLAS calls over precomputed float32 arrays: no
torch, no Python loop over items.

Edit semantics (one edit = one latent and one value):

- latent *active* for the user (z_l > 0): ``value`` is a **scale** of the current activation,
  z'_l = value * z_l, value in [``SCALE_MIN``, ``SCALE_MAX``] (paper §8 scales -10x ... +10x);
  value 1 is neutral.
- latent *not active*: ``value`` is an **absolute** activation z'_l = value, within
  ``±ABS_FACTOR x`` the latent's largest activation over the run's users (a latent never active
  on any user falls back to the largest activation of any latent); value 0 is neutral.

Modes:

- ``error_preserving``: x' = x + W_dec^T (z' - z). Keeps what the SAE failed to reconstruct, so
  neutral sliders give exactly the model's own list.
- ``replace``: x' = decode(z') = z' W_dec + b_dec (the paper: the reconstruction replaces x).

Ranking convention (docs/method.md §1.2): every item is scored, the user's known items (history +
dev item, everything but the held-out test item) are masked, lists are ordered by score descending
then item index; the *rank* of the test item counts ties against it (:mod:`.ranking`). Segment
steering (every test-side user at once) is :mod:`.segment`.
"""

from backend.steering.cache import clear_cache, engine_for_run
from backend.steering.engine import SteeringEngine
from backend.steering.text import RunText, build_run_text
from backend.steering.types import (
    ABS_FACTOR,
    BASE_DEPTH,
    MAX_EDITS,
    SCALE_MAX,
    SCALE_MIN,
    TOP_N,
    Edit,
    EditReport,
    RankedItem,
    SegmentLatentReport,
    SegmentResult,
    SteeringError,
    SteerMode,
    SteerResult,
    UnknownItemError,
    UnknownLatentError,
    UnknownUserError,
)

__all__ = [
    "ABS_FACTOR",
    "BASE_DEPTH",
    "MAX_EDITS",
    "SCALE_MAX",
    "SCALE_MIN",
    "TOP_N",
    "Edit",
    "EditReport",
    "RankedItem",
    "RunText",
    "SegmentLatentReport",
    "SegmentResult",
    "SteerMode",
    "SteerResult",
    "SteeringEngine",
    "SteeringError",
    "UnknownItemError",
    "UnknownLatentError",
    "UnknownUserError",
    "build_run_text",
    "clear_cache",
    "engine_for_run",
]
