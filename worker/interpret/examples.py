"""Example cases per latent: construction, verification, random (docs/method.md §1.7, paper §3.3).

The paper takes the top 2N activated cases and splits them at random, yet also says construction
comes from the recommendation training side and verification from the test side; the authors'
code drew both from the same 226 test users. We keep the two pools disjoint (``Cases.side``):
- construction: the N most activated TRAIN cases whose predicted (top-1) items are distinct,
- verification: the N most activated TEST cases with distinct predicted items,
- random: N TEST cases, drawn uniformly with a seed, where the latent is not active.

"Distinct predicted items" keeps, for each item, only the case where the latent fires hardest, so
five copies of one blockbuster cannot make a concept. A latent with fewer than N such
verification cases is ``too_rare``: it is never verified on its construction cases instead.
Ties in activation are broken by the lower case index, so the selection is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.cases import TEST, TRAIN, Cases
from worker.data.dataset import Dataset
from worker.interpret.levels import check_codes

ROLES = ("construction", "verification", "random")
HISTORY_SHOWN = 20  # items of a case's history kept with an example (SASRec sees 20)
_EXAMPLE_ARRAYS = ("case", "item", "activation", "level")
_COUNT_ARRAYS = ("n_active_construction", "n_active_verification", "too_rare")


@dataclass
class ExampleSet:
    """One role's examples, N slots per latent; unused slots hold case -1 (item -1, value 0)."""

    case: np.ndarray  # [n_latents, N] int64 index into the recorded cases
    item: np.ndarray  # [n_latents, N] int64 the case's predicted top-1 item
    activation: np.ndarray  # [n_latents, N] float32 the latent's activation (0 for random)
    level: np.ndarray  # [n_latents, N] int64 level 0..10 (0 for random)

    @property
    def count(self) -> np.ndarray:
        """[n_latents] number of filled slots."""
        return (self.case >= 0).sum(axis=1)

    @classmethod
    def empty(cls, n_latents: int, n: int) -> ExampleSet:
        return cls(
            case=np.full((n_latents, n), -1, np.int64),
            item=np.full((n_latents, n), -1, np.int64),
            activation=np.zeros((n_latents, n), np.float32),
            level=np.zeros((n_latents, n), np.int64),
        )

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The four arrays under ``<prefix>.case`` etc. (for a safetensors file)."""
        return {f"{prefix}.{name}": getattr(self, name) for name in _EXAMPLE_ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> ExampleSet:
        """The inverse of :meth:`to_arrays`."""
        return cls(**{name: arrays[f"{prefix}.{name}"] for name in _EXAMPLE_ARRAYS})


@dataclass
class LatentExamples:
    """Everything docs/method.md §1.7 records per latent; rows are latents."""

    construction: ExampleSet
    verification: ExampleSet
    random: ExampleSet
    n_active_construction: np.ndarray  # [n_latents] active TRAIN cases (before distinct-items)
    n_active_verification: np.ndarray  # [n_latents] active TEST cases (before distinct-items)
    too_rare: np.ndarray  # [n_latents] bool: fewer than N distinct-item verification cases
    n: int
    seed: int

    @property
    def n_latents(self) -> int:
        return self.construction.case.shape[0]

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Every array under ``<prefix>.<field>`` (``n`` and ``seed`` go to :meth:`meta`)."""
        arrays: dict[str, np.ndarray] = {}
        for role in ROLES:
            arrays |= getattr(self, role).to_arrays(f"{prefix}.{role}")
        for name in _COUNT_ARRAYS:
            arrays[f"{prefix}.{name}"] = getattr(self, name)
        return arrays

    def meta(self) -> dict[str, int]:
        """The scalars :meth:`to_arrays` leaves out, for JSON."""
        return {"n": self.n, "seed": self.seed}

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], prefix: str, meta: dict[str, int]
    ) -> LatentExamples:
        """The inverse of :meth:`to_arrays` and :meth:`meta`."""
        return cls(
            construction=ExampleSet.from_arrays(arrays, f"{prefix}.construction"),
            verification=ExampleSet.from_arrays(arrays, f"{prefix}.verification"),
            random=ExampleSet.from_arrays(arrays, f"{prefix}.random"),
            n_active_construction=arrays[f"{prefix}.n_active_construction"],
            n_active_verification=arrays[f"{prefix}.n_active_verification"],
            too_rare=arrays[f"{prefix}.too_rare"],
            n=int(meta["n"]),
            seed=int(meta["seed"]),
        )


def top_distinct(
    groups: np.ndarray,
    values: np.ndarray,
    items: np.ndarray,
    tiebreak: np.ndarray,
    n_groups: int,
    n: int,
) -> np.ndarray:
    """[n_groups, n] positions into the entry arrays of each group's top-n entries, -1 padded.

    Entries (group, value, item) are ranked by value, descending (ties: ascending ``tiebreak``);
    within a group only the best entry of each item is kept. Vectorised: one lexsort plus one
    ``np.unique`` over all entries, so 1024 latents x 40k cases take milliseconds.
    """
    out = np.full((n_groups, n), -1, np.int64)
    if len(groups) == 0:
        return out
    order = np.lexsort((tiebreak, -values, groups))
    key = groups[order].astype(np.int64) * (int(items.max()) + 1) + items[order]
    _, first = np.unique(key, return_index=True)  # first = best entry of each (group, item)
    kept = order[np.sort(first)]  # still group-major, value-descending
    g = groups[kept]
    rank = np.arange(len(kept)) - np.searchsorted(g, g, side="left")
    sel = rank < n
    out[g[sel], rank[sel]] = kept[sel]
    return out


def select_examples(
    cases: Cases,
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    levels: np.ndarray,
    top_items: np.ndarray,
    n_latents: int,
    n: int = 5,
    seed: int = 0,
) -> LatentExamples:
    """Pick the construction / verification / random examples of every latent.

    latent_idx, latent_val, levels: [C, k] (recorded TopK codes and their levels); top_items
    [C, >=1] (column 0 is the predicted item); cases.side says which pool a case belongs to
    (TRAIN: construction, TEST: verification and random; DEV is unused).
    """
    check_codes(latent_idx, latent_val, n_latents)
    C, k = latent_idx.shape
    if len(cases) != C or levels.shape != (C, k) or top_items.ndim != 2 or len(top_items) != C:
        raise ValueError(
            f"cases ({len(cases)}), levels {levels.shape} and top_items {top_items.shape} must "
            f"all have C = {C} rows matching latent_idx {latent_idx.shape}"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")

    # One entry per active code, in the narrowest types that hold them (18 bytes an entry, not
    # 37: the entries are C x k, the largest arrays of interpret). Values, orders and
    # ties are unchanged; the ExampleSets below keep their int64 / float32 types.
    active = latent_val > 0
    ent_case = np.broadcast_to(np.arange(C, dtype=np.int32)[:, None], (C, k))[active]
    ent_lat = latent_idx[active].astype(np.int32)
    ent_val = latent_val[active]
    ent_lvl = levels[active].astype(np.int8)  # 0..10
    ent_item = top_items[ent_case, 0].astype(np.int32)
    ent_side = cases.side[ent_case]

    def pick(side: int) -> tuple[ExampleSet, np.ndarray]:
        m = ent_side == side
        pos = top_distinct(ent_lat[m], ent_val[m], ent_item[m], ent_case[m], n_latents, n)
        where = np.flatnonzero(m)
        out = ExampleSet.empty(n_latents, n)
        filled = pos >= 0
        ent = where[pos[filled]]
        out.case[filled] = ent_case[ent]
        out.item[filled] = ent_item[ent]
        out.activation[filled] = ent_val[ent]
        out.level[filled] = ent_lvl[ent]
        return out, np.bincount(ent_lat[m], minlength=n_latents)

    construction, n_active_c = pick(TRAIN)
    verification, n_active_v = pick(TEST)

    test_ent = ent_side == TEST
    random = random_examples(
        cases, ent_lat[test_ent], ent_case[test_ent], top_items, n_latents, n, seed
    )
    return LatentExamples(
        construction=construction,
        verification=verification,
        random=random,
        n_active_construction=n_active_c,
        n_active_verification=n_active_v,
        too_rare=verification.count < n,
        n=n,
        seed=seed,
    )


def random_examples(
    cases: Cases,
    t_lat: np.ndarray,
    t_case: np.ndarray,
    top_items: np.ndarray,
    n_latents: int,
    n: int,
    seed: int,
) -> ExampleSet:
    """Random negatives (docs/method.md §1.7): per latent, draw (wanted + #active) TEST cases
    without replacement in random order and keep the first `wanted` inactive ones, which is a
    uniform sample of the inactive cases and never needs a second draw. ``t_lat`` / ``t_case``:
    the latent and case of every active code on a TEST case."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(cases.side == TEST)
    order = np.argsort(t_lat, kind="stable")
    bounds = np.searchsorted(t_lat[order], np.arange(n_latents + 1))
    random = ExampleSet.empty(n_latents, n)
    for latent in range(n_latents):
        act = t_case[order[bounds[latent] : bounds[latent + 1]]]
        want = min(n, len(pool) - len(act))
        if want <= 0:
            continue
        draw = pool[rng.choice(len(pool), size=min(len(pool), want + len(act)), replace=False)]
        chosen = draw[~np.isin(draw, act)][:want]
        random.case[latent, :want] = chosen
        random.item[latent, :want] = top_items[chosen, 0]
    return random


def example_history(dataset: Dataset, cases: Cases, case: int) -> np.ndarray:
    """[<= HISTORY_SHOWN] the last items case ``case`` saw before its target (what is shown)."""
    u, n = int(cases.user[case]), int(cases.length[case])
    return dataset.sequences[u][max(0, n - HISTORY_SHOWN) : n]
