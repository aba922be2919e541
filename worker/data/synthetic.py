"""Synthetic interaction data with planted concepts: a ground truth for the whole pipeline.

Every item carries a few tags ("planted07": one token, so TF-IDF treats it as one term), every
user prefers a few tags, and each history position is drawn, with probability ``coherence``,
from the items carrying one of the user's tags (otherwise from the items carrying none of them).
Items are drawn without replacement per user with Zipf-like popularity. An SAE trained on a
recommender fitted to this data should find latents whose TF-IDF concept (docs/method.md §1.8) is a
planted tag, and ``PlantedTruth`` says which.

Vectorised with numpy (Gumbel-top-k sampling without replacement, a block of users at a time):
MovieLens-1M size (6,040 users, 3,706 items, 1,000,209 interactions) takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from worker.data.dataset import RawDataset

ML1M_USERS, ML1M_ITEMS, ML1M_INTERACTIONS = 6040, 3706, 1_000_209


@dataclass
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 2000
    n_tags: int = 40  # planted concepts
    tags_per_item: int = 2  # distinct tags on every item
    tags_per_user: int = 2  # distinct preferred tags of every user
    mean_history: float = 40.0  # mean interactions per user (ignored if n_interactions is set)
    n_interactions: int | None = None  # exact total, e.g. 1,000,209 for the ML-1M shape
    min_history: int = 5  # shortest history (ML-1M: 20)
    max_history: int | None = None  # longest history (None: n_items; ML-1M: 2,314)
    history_sigma: float = 0.8  # log-normal spread of history lengths
    coherence: float = 0.9  # probability that a history item has one of the user's tags
    popularity_exponent: float = 1.0  # item weight ~ 1 / rank**exponent (Zipf-like skew)
    with_ratings: bool = True  # every rating 5.0 (else NaN: implicit feedback)
    start_time: int = 1_000_000_000  # Unix seconds of the earliest interaction
    seed: int = 0
    block_users: int = 512  # users sampled per vectorised block (memory: block x n_items)

    @classmethod
    def ml1m(cls, **overrides: object) -> SyntheticConfig:
        """The MovieLens-1M shape: 6,040 users, 3,706 items, 1,000,209 interactions, >= 20 each."""
        base: dict[str, object] = dict(
            n_users=ML1M_USERS,
            n_items=ML1M_ITEMS,
            n_interactions=ML1M_INTERACTIONS,
            min_history=20,
            max_history=2314,
            history_sigma=1.0,
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


def ml1m_shape(**overrides: object) -> SyntheticConfig:
    """Shorthand for ``SyntheticConfig.ml1m``."""
    return SyntheticConfig.ml1m(**overrides)


@dataclass
class PlantedTruth:
    """What was planted. Indices refer to ``tags``; rows to the raw (original) ids given."""

    tags: list[str]  # the planted concept words, e.g. "planted07"
    item_ids: list[str]  # original id of row i of item_tags
    item_tags: np.ndarray  # [n_items, tags_per_item] int64 tag indices
    user_ids: list[str]  # original id of row u of user_tags
    user_tags: np.ndarray  # [n_users, tags_per_user] int64 tag indices
    coherent: np.ndarray  # [n_interactions] bool, row-aligned with raw.interactions

    def item_tag_names(self, item_id: str) -> list[str]:
        return [self.tags[t] for t in self.item_tags[self.item_ids.index(item_id)]]

    def user_tag_names(self, user_id: str) -> list[str]:
        return [self.tags[t] for t in self.user_tags[self.user_ids.index(user_id)]]


def _validate(config: SyntheticConfig) -> None:
    problems = []
    if not 1 <= config.tags_per_item <= config.n_tags:
        problems.append(f"tags_per_item={config.tags_per_item} must be in 1..n_tags")
    if not 1 <= config.tags_per_user <= config.n_tags:
        problems.append(f"tags_per_user={config.tags_per_user} must be in 1..n_tags")
    if not 0.0 <= config.coherence <= 1.0:
        problems.append(f"coherence={config.coherence} must be in [0, 1]")
    high = _max_history(config)
    if not 1 <= config.min_history <= high <= config.n_items:
        problems.append(
            f"need 1 <= min_history ({config.min_history}) <= max_history ({high}) "
            f"<= n_items ({config.n_items})"
        )
    total = _total(config)
    if not config.n_users * config.min_history <= total <= config.n_users * high:
        problems.append(
            f"{total} interactions cannot fit {config.n_users} users with "
            f"{config.min_history}..{high} distinct items each"
        )
    if problems:
        raise ValueError("SyntheticConfig: " + "; ".join(problems))


def _total(config: SyntheticConfig) -> int:
    if config.n_interactions is not None:
        return int(config.n_interactions)
    return int(round(config.n_users * config.mean_history))


def _max_history(config: SyntheticConfig) -> int:
    return config.n_items if config.max_history is None else config.max_history


def _history_lengths(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """[n_users] int64 log-normal lengths in [min_history, max_history], summing to the total."""
    n, low, high, total = config.n_users, config.min_history, _max_history(config), _total(config)
    weights = rng.lognormal(0.0, config.history_sigma, size=n)
    lengths = np.clip(low + np.floor(weights / weights.sum() * (total - n * low)), low, high)
    lengths = lengths.astype(np.int64)
    # Integer fix-up: add (or remove) one interaction at a time from users with room.
    while (gap := total - int(lengths.sum())) != 0:
        room = np.flatnonzero(lengths < high) if gap > 0 else np.flatnonzero(lengths > low)
        chosen = rng.choice(room, size=min(abs(gap), len(room)), replace=False)
        lengths[chosen] += 1 if gap > 0 else -1
    return lengths


def _distinct_rows(rng: np.random.Generator, rows: int, n: int, k: int) -> np.ndarray:
    """[rows, k] int64: k distinct values of 0..n-1 per row, uniformly at random."""
    return np.argsort(rng.random((rows, n)), axis=1)[:, :k].astype(np.int64)


def _draw_histories(
    config: SyntheticConfig,
    rng: np.random.Generator,
    user_tags: np.ndarray,
    item_onehot: np.ndarray,
    log_weight: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user [N], item [N], coherent [N] bool) of every interaction, users in blocks of
    ``config.block_users``, unordered in time: each user's coherent items first, then the rest.

    user_tags [n_users, tags_per_user], item_onehot [n_items, n_tags] bool, log_weight [n_items]
    the popularity prior, lengths [n_users] history lengths.
    """
    n_users, n_items, n_tags = config.n_users, config.n_items, config.n_tags
    users_out: list[np.ndarray] = []
    items_out: list[np.ndarray] = []
    coherent_out: list[np.ndarray] = []
    positions = np.arange(n_items)
    for start in range(0, n_users, config.block_users):
        stop = min(start + config.block_users, n_users)
        b = stop - start
        user_onehot = np.zeros((b, n_tags), dtype=np.float32)
        np.put_along_axis(user_onehot, user_tags[start:stop], 1.0, axis=1)
        match_BI = (user_onehot @ item_onehot.T.astype(np.float32)) > 0  # item has a user tag
        n_match = match_BI.sum(axis=1)
        length = lengths[start:stop]
        # Per position coherent with prob. `coherence`, bounded by what each pool can supply.
        want = rng.binomial(length, config.coherence)
        n_coherent = np.clip(want, length - (n_items - n_match), n_match)
        # Gumbel-top-k: the k largest (log weight + Gumbel noise) are a weighted draw without
        # replacement; rank the matched items first, each pool by its noisy key.
        keys_BI = log_weight[None, :] + rng.gumbel(size=(b, n_items))
        order_m = np.argsort(np.where(match_BI, -keys_BI, np.inf), axis=1)
        order_o = np.argsort(np.where(match_BI, np.inf, -keys_BI), axis=1)
        take_m = positions[None, :] < n_coherent[:, None]
        take_o = positions[None, :] < (length - n_coherent)[:, None]
        block_users = np.arange(start, stop)
        users_out += [
            np.repeat(block_users, n_coherent),
            np.repeat(block_users, length - n_coherent),
        ]
        items_out += [order_m[take_m], order_o[take_o]]
        coherent_out += [np.ones(int(n_coherent.sum()), bool), np.zeros(int(take_o.sum()), bool)]

    return np.concatenate(users_out), np.concatenate(items_out), np.concatenate(coherent_out)


def generate(config: SyntheticConfig | None = None) -> tuple[RawDataset, PlantedTruth]:
    """Interactions and item metadata with planted tag structure, deterministic given the seed.

    Returns the RawDataset (user ids "1".."n_users", item ids "1".."n_items", timestamps
    increasing within each user, ratings 5.0 or NaN) and the PlantedTruth. A user whose tags
    cover fewer items than their coherent draws asks for gets the rest from the other items,
    so the realised coherence of very long histories is below ``coherence``.
    """
    config = config or SyntheticConfig()
    _validate(config)
    rng = np.random.default_rng(config.seed)
    n_users, n_items, n_tags = config.n_users, config.n_items, config.n_tags

    item_tags = _distinct_rows(rng, n_items, n_tags, config.tags_per_item)
    user_tags = _distinct_rows(rng, n_users, n_tags, config.tags_per_user)
    item_onehot = np.zeros((n_items, n_tags), dtype=bool)
    np.put_along_axis(item_onehot, item_tags, True, axis=1)
    popularity_rank = rng.permutation(n_items) + 1
    log_weight = -config.popularity_exponent * np.log(popularity_rank)  # [n_items]

    lengths = _history_lengths(config, rng)
    users, items, coherent = _draw_histories(
        config, rng, user_tags, item_onehot, log_weight, lengths
    )
    # Shuffle each user's items into a random time order, then give increasing timestamps.
    order = np.lexsort((rng.random(len(users)), users))
    users, items, coherent = users[order], items[order], coherent[order]
    gaps = rng.integers(60, 3600 * 24, size=len(users))  # 1 minute .. 1 day between events
    user_start = np.repeat(rng.integers(0, 3600 * 24 * 365 * 2, size=n_users), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    cumulative = np.cumsum(gaps)
    within = cumulative - np.repeat(cumulative[first], lengths)  # 0 at each user's first item
    timestamps = config.start_time + user_start + within

    user_ids = [str(u + 1) for u in range(n_users)]
    item_ids = [str(i + 1) for i in range(n_items)]
    tag_width = len(str(n_tags - 1))
    tags = [f"planted{t:0{tag_width}d}" for t in range(n_tags)]
    interactions = pd.DataFrame(
        {
            "user": np.asarray(user_ids, dtype=object)[users],
            "item": np.asarray(item_ids, dtype=object)[items],
            "timestamp": timestamps.astype(np.int64),
            "rating": np.full(len(users), 5.0 if config.with_ratings else np.nan),
        }
    )
    items_frame = pd.DataFrame(
        {
            "item": item_ids,
            "title": [f"Item {i}" for i in item_ids],
            "genres": [[] for _ in item_ids],
            "tags": [[tags[t] for t in row] for row in item_tags],
            "text": [""] * n_items,
        }
    )
    raw = RawDataset(f"synthetic-seed{config.seed}", interactions, items_frame)
    truth = PlantedTruth(tags, item_ids, item_tags, user_ids, user_tags, coherent)
    return raw, truth


def write_generic_csv(raw: RawDataset, directory: str | Path) -> Path:
    """Write ``raw`` in the "generic" layout (interactions.csv, items.csv; lists joined by '|').

    Lets any RawDataset, synthetic ones included, be read back with ``read_dataset("generic")``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    raw.interactions[["user", "item", "timestamp", "rating"]].to_csv(
        directory / "interactions.csv", index=False
    )
    items = raw.items.copy()
    for column in ("genres", "tags"):
        if column in items.columns:
            bad = [v for row in items[column] for v in row if "|" in v]
            if bad:
                raise ValueError(f"{column} value {bad[0]!r} contains '|', the list separator")
            items[column] = ["|".join(row) for row in items[column]]
    items.to_csv(directory / "items.csv", index=False)
    return directory
