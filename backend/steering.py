"""Live steering (SPEC §1.10, the product's version of paper §8 / Table 8), numpy only.

A :class:`SteeringEngine` holds one run's arrays in memory: the SAE (SAELens layout), the item
embeddings, the user vectors at the test position, every user's known items and the items' text
tokens for concept matching. It is built once per run and shared by every request through
:func:`engine_for_run` (a process-wide, thread-safe cache), so a steering request is a handful of
BLAS calls over precomputed float32 arrays: no torch, no Python loop over items.

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

Ranking convention (SPEC §1.2): every item is scored, the user's known items (history + dev item,
everything but the held-out test item) are masked, lists are ordered by score descending then
item index; the *rank* of the test item counts ties against it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.schema import Item, Latent, Run, User

SCALE_MIN, SCALE_MAX = -10.0, 10.0
ABS_FACTOR = 10.0  # an absolute activation may reach ±10x the latent's largest observed one
MAX_EDITS = 32
TOP_N = 10
# Every user's unsteered ranking is kept to this depth (precomputed at load): "rank before" of a
# steered item is exact within it and reported as None (below the top BASE_DEPTH) beyond.
BASE_DEPTH = 50
# Segment steering scores users in chunks of at most this many (user, item) scores (~32 MB).
_SEGMENT_CHUNK_ELEMS = 8_000_000
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_NO_ITEMS = np.zeros(0, dtype=np.int64)


class SteerMode(StrEnum):
    ERROR_PRESERVING = "error_preserving"
    REPLACE = "replace"


class SteeringError(ValueError):
    """A request the engine cannot honour as asked (bad value, bad range): HTTP 422."""


class UnknownUserError(LookupError):
    """The user index is not part of the run: HTTP 404."""


class UnknownLatentError(LookupError):
    """The latent index is not part of the run's SAE: HTTP 404."""


class ArtifactError(RuntimeError):
    """The run's artifact directory is missing a file or holds arrays of the wrong shape."""


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


@dataclass(frozen=True)
class SegmentLatentReport:
    latent: int
    value: float
    concept: str | None
    n_active: int  # test-side users for whom the latent is active
    presence_before: float | None  # paper eq. 5 over users where the latent is active
    presence_after: float | None
    share_before: float | None  # mean share of the top N carrying the concept (active users)
    share_after: float | None


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


@dataclass
class RunText:
    """What the engine needs from the database, loaded once (see :func:`load_run_text`)."""

    titles: list[str]  # [n_items]
    postings: dict[str, np.ndarray]  # token -> sorted int64 idx of the items carrying it
    known_indptr: np.ndarray  # [n_users + 1] int64, CSR over users
    known_indices: np.ndarray  # [nnz] int64: history + dev item of each user
    test_items: np.ndarray  # [n_users] int64, -1 when the user has no row
    test_side: np.ndarray  # [n_test_side] int64 user idx with side == "test"
    tfidf_concepts: list[str | None]  # [n_latents]


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens: the concept matcher's (and only its) notion of a word."""
    return _TOKEN_RE.findall(text.lower())


def _item_tokens(title: str, genres: Iterable[Any], tags: Iterable[Any], text: str) -> set[str]:
    parts = [title, text, *(str(g) for g in genres), *(str(t) for t in tags)]
    return set(tokenize(" ".join(parts)))


def load_run_text(session: Session, run: Run) -> RunText:
    """Read the rows steering needs (items' text, users' known items, latents' concepts).

    Columns are selected explicitly so a 100k-item catalog loads in about a second.
    """
    n_items, n_users, n_latents = run.n_items, run.n_users, run.n_latents
    titles = [""] * n_items
    postings: dict[str, list[int]] = {}
    rows = session.execute(
        select(Item.idx, Item.title, Item.genres, Item.tags, Item.text).where(Item.run_id == run.id)
    )
    for idx, title, genres, tags, text in rows:
        if not 0 <= idx < n_items:
            raise ArtifactError(f"run {run.id!r}: item idx {idx} outside [0, {n_items})")
        titles[idx] = title
        for tok in _item_tokens(title, genres or [], tags or [], text or ""):
            postings.setdefault(tok, []).append(idx)

    known: list[list[int]] = [[] for _ in range(n_users)]
    test_items = np.full(n_users, -1, dtype=np.int64)
    test_side: list[int] = []
    rows = session.execute(
        select(User.idx, User.history, User.dev_item, User.test_item, User.side).where(
            User.run_id == run.id
        )
    )
    for idx, history, dev_item, test_item, side in rows:
        if not 0 <= idx < n_users:
            raise ArtifactError(f"run {run.id!r}: user idx {idx} outside [0, {n_users})")
        known[idx] = [*history, dev_item]
        test_items[idx] = test_item
        if side == "test":
            test_side.append(idx)
    lengths = np.fromiter((len(k) for k in known), dtype=np.int64, count=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter((i for k in known for i in k), dtype=np.int64, count=int(indptr[-1]))

    concepts: list[str | None] = [None] * n_latents
    for idx, concept in session.execute(
        select(Latent.idx, Latent.tfidf_concept).where(Latent.run_id == run.id)
    ):
        if 0 <= idx < n_latents:
            concepts[idx] = concept
    return RunText(
        titles=titles,
        postings={tok: np.unique(np.asarray(ids, np.int64)) for tok, ids in postings.items()},
        known_indptr=indptr,
        known_indices=indices,
        test_items=test_items,
        test_side=np.asarray(sorted(test_side), dtype=np.int64),
        tfidf_concepts=concepts,
    )


def _load_tensors(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ArtifactError(f"missing artifact {path}")
    arrays = load_file(str(path))
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"{path} lacks tensors {missing}; it has {sorted(arrays)}")
    return {n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in names}


def _order_desc(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates sorted by score descending, then item index (the list order everywhere)."""
    return candidates[np.lexsort((candidates, -scores[candidates]))]


class SteeringEngine:
    """One run's steering state; immutable after construction, safe to share across threads.

    Shapes: W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d], item_embeddings [I, d],
    user_vectors [U, d]; n latents, k active per case.
    """

    def __init__(
        self,
        run_id: str,
        W_enc: np.ndarray,
        b_enc: np.ndarray,
        W_dec: np.ndarray,
        b_dec: np.ndarray,
        k: int,
        item_embeddings: np.ndarray,
        user_vectors: np.ndarray,
        text: RunText,
    ) -> None:
        d, n = W_enc.shape
        checks = {
            "b_enc": (b_enc.shape, (n,)),
            "W_dec": (W_dec.shape, (n, d)),
            "b_dec": (b_dec.shape, (d,)),
            "item_embeddings": (item_embeddings.shape[1:], (d,)),
            "user_vectors": (user_vectors.shape[1:], (d,)),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != want:
                raise ArtifactError(f"run {run_id!r}: {name} has shape {got}, expected {want}")
        if not 0 < k <= n:
            raise ArtifactError(f"run {run_id!r}: k={k} must be in [1, {n}]")
        n_items, n_users = item_embeddings.shape[0], user_vectors.shape[0]
        if len(text.titles) != n_items or len(text.test_items) != n_users:
            raise ArtifactError(
                f"run {run_id!r}: database has {len(text.titles)} items / {len(text.test_items)}"
                f" users, artifacts have {n_items} / {n_users}"
            )
        if len(text.tfidf_concepts) != n:
            raise ArtifactError(f"run {run_id!r}: {len(text.tfidf_concepts)} latents vs d_sae={n}")
        self.run_id = run_id
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.k = k
        self.item_embeddings = item_embeddings
        self.user_vectors = user_vectors
        self.text = text
        self.n_latents, self.d = n, d
        self.n_items, self.n_users = n_items, n_users
        # Per-latent largest activation over every user: the absolute-value slider's range.
        # (and its mean non-zero activation, segment steering's fill value), 4096 users at a time.
        self.max_activation = np.zeros(n, np.float32)
        total, counts = np.zeros(n, np.float64), np.zeros(n, np.int64)
        for start in range(0, n_users, 4096):
            z_UN = self.encode(user_vectors[start : start + 4096])
            np.maximum(self.max_activation, z_UN.max(axis=0), out=self.max_activation)
            total += z_UN.sum(axis=0)
            counts += (z_UN > 0).sum(axis=0)
        self.mean_activation = np.where(counts > 0, total / np.maximum(counts, 1), 0.0)
        self._global_max = float(self.max_activation.max()) or 1.0
        self._term_masks: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        # Every user's unsteered list, once, with batched GEMMs: a request then needs a single
        # pass over the item matrix (the steered one) instead of two.
        self.base_top, self.base_scores, self.base_test_rank = self._rank_users(
            np.arange(n_users, dtype=np.int64), user_vectors, min(BASE_DEPTH, n_items)
        )

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_artifacts(cls, run_id: str, artifact_dir: Path, text: RunText) -> SteeringEngine:
        """Load ``sae/cfg.json``, ``sae/sae_weights.safetensors`` and ``vectors.safetensors``."""
        artifact_dir = Path(artifact_dir)
        cfg_path = artifact_dir / "sae" / "cfg.json"
        if not cfg_path.is_file():
            raise ArtifactError(f"run {run_id!r}: missing {cfg_path}")
        cfg = json.loads(cfg_path.read_text())
        for key in ("d_in", "d_sae", "k"):
            if key not in cfg:
                raise ArtifactError(f"{cfg_path} lacks {key!r}")
        sae = _load_tensors(
            artifact_dir / "sae" / "sae_weights.safetensors", ("W_enc", "b_enc", "W_dec", "b_dec")
        )
        vec = _load_tensors(
            artifact_dir / "vectors.safetensors", ("item_embeddings", "user_vectors")
        )
        if sae["W_enc"].shape != (cfg["d_in"], cfg["d_sae"]):
            raise ArtifactError(
                f"{cfg_path}: W_enc has shape {sae['W_enc'].shape}, cfg says "
                f"({cfg['d_in']}, {cfg['d_sae']})"
            )
        return cls(
            run_id,
            sae["W_enc"],
            sae["b_enc"],
            sae["W_dec"],
            sae["b_dec"],
            int(cfg["k"]),
            vec["item_embeddings"],
            vec["user_vectors"],
            text,
        )

    # -- SAE -------------------------------------------------------------------------------

    def encode(self, x: np.ndarray) -> np.ndarray:
        """[..., d] -> [..., n] dense codes: TopK((x - b_dec) W_enc + b_enc), ReLU on the kept."""
        pre = (np.asarray(x, dtype=np.float32) - self.b_dec) @ self.W_enc + self.b_enc
        top = np.argpartition(-pre, self.k - 1, axis=-1)[..., : self.k]
        z = np.zeros_like(pre)
        np.put_along_axis(z, top, np.maximum(np.take_along_axis(pre, top, axis=-1), 0.0), -1)
        return z

    def decode(self, z: np.ndarray) -> np.ndarray:
        """[..., n] -> [..., d]: z W_dec + b_dec."""
        return z @ self.W_dec + self.b_dec

    # -- validation ------------------------------------------------------------------------

    def check_user(self, user: int) -> None:
        if not 0 <= user < self.n_users or self.text.test_items[user] < 0:
            raise UnknownUserError(f"run {self.run_id!r} has no user {user}")

    def check_latent(self, latent: int) -> None:
        if not 0 <= latent < self.n_latents:
            raise UnknownLatentError(
                f"run {self.run_id!r} has no latent {latent} (latents are 0..{self.n_latents - 1})"
            )

    def absolute_limit(self, latent: int) -> float:
        """Largest |value| accepted for a latent that is not active: ABS_FACTOR x its max."""
        m = float(self.max_activation[latent])
        return ABS_FACTOR * (m if m > 0 else self._global_max)

    def _check_edits(self, edits: Sequence[Edit]) -> None:
        if len(edits) > MAX_EDITS:
            raise SteeringError(f"at most {MAX_EDITS} edits per request, got {len(edits)}")
        seen: set[int] = set()
        for e in edits:
            self.check_latent(e.latent)
            if e.latent in seen:
                raise SteeringError(f"latent {e.latent} is edited twice")
            seen.add(e.latent)
            if not np.isfinite(e.value):
                raise SteeringError(f"latent {e.latent}: value must be finite, got {e.value}")

    def _apply(self, z: np.ndarray, edits: Sequence[Edit]) -> tuple[np.ndarray, list[str]]:
        """[n] -> [n]: the edited code and each edit's kind; raises on out-of-range values."""
        z2 = z.copy()
        kinds = []
        for e in edits:
            if z[e.latent] > 0:
                if not SCALE_MIN <= e.value <= SCALE_MAX:
                    raise SteeringError(
                        f"latent {e.latent} is active: value is a scale in "
                        f"[{SCALE_MIN:g}, {SCALE_MAX:g}], got {e.value:g}"
                    )
                z2[e.latent] = e.value * z[e.latent]
                kinds.append("scale")
            else:
                lim = self.absolute_limit(e.latent)
                if not -lim <= e.value <= lim:
                    raise SteeringError(
                        f"latent {e.latent} is not active: value is an absolute activation in "
                        f"[{-lim:.4g}, {lim:.4g}], got {e.value:g}"
                    )
                z2[e.latent] = e.value
                kinds.append("absolute")
        return z2, kinds

    # -- concepts --------------------------------------------------------------------------

    def concept_mask(self, term: str) -> np.ndarray:
        """[I] bool: items whose title/text/genres/tags contain every token of ``term``.

        Case-insensitive whole-token match; computed once per term and cached.
        """
        key = " ".join(tokenize(term))
        mask = self._term_masks.get(key)
        if mask is not None:
            return mask
        toks = key.split()
        mask = np.zeros(self.n_items, dtype=bool)
        if toks:
            mask[self.text.postings.get(toks[0], _NO_ITEMS)] = True
            for tok in toks[1:]:
                has = np.zeros(self.n_items, dtype=bool)
                has[self.text.postings.get(tok, _NO_ITEMS)] = True
                mask &= has
        with self._lock:
            self._term_masks[key] = mask
        return mask

    def latent_concept_mask(self, latent: int) -> np.ndarray | None:
        concept = self.text.tfidf_concepts[latent]
        return None if not concept else self.concept_mask(concept)

    # -- ranking ---------------------------------------------------------------------------

    def known_items(self, user: int) -> np.ndarray:
        p = self.text.known_indptr
        return self.text.known_indices[p[user] : p[user + 1]]

    def _steered_vector(
        self, x: np.ndarray, z: np.ndarray, z2: np.ndarray, mode: SteerMode
    ) -> np.ndarray:
        if mode is SteerMode.REPLACE:
            return self.decode(z2)
        changed = np.flatnonzero(z2 != z)
        if changed.size == 0:
            return x  # exactly the model's own vector, so exactly its own list
        return x + (z2[changed] - z[changed]) @ self.W_dec[changed]

    def steered_scores(
        self, user: int, edits: Sequence[Edit], mode: SteerMode | str = SteerMode.ERROR_PRESERVING
    ) -> np.ndarray:
        """[I] float32 scores of every item after the edits, known items at -inf (tests, tools)."""
        mode = SteerMode(mode)
        self.check_user(user)
        self._check_edits(edits)
        x = self.user_vectors[user]
        z = self.encode(x)
        z2, _ = self._apply(z, edits)
        scores = self.item_embeddings @ self._steered_vector(x, z, z2, mode)
        scores[self.known_items(user)] = -np.inf
        return scores

    def steer(
        self, user: int, edits: Sequence[Edit], mode: SteerMode | str = SteerMode.ERROR_PRESERVING
    ) -> SteerResult:
        """Rerank every item for ``user`` with ``edits`` applied to the SAE code of its vector."""
        mode = SteerMode(mode)
        self.check_user(user)
        self._check_edits(edits)
        x = self.user_vectors[user]
        z = self.encode(x)
        z2, kinds = self._apply(z, edits)
        x2 = self._steered_vector(x, z, z2, mode)

        n = min(TOP_N, self.n_items)
        base_top = self.base_top[user, :n]
        depth_pos = {int(i): r for r, i in enumerate(self.base_top[user])}
        t = int(self.text.test_items[user])
        rank_before = int(self.base_test_rank[user])
        if x2 is x:  # neutral error-preserving edits: exactly the model's own list
            top, top_scores, rank_after = base_top, self.base_scores[user, :n], rank_before
        else:
            steered = self.item_embeddings @ x2  # [I]: the one pass over the item matrix
            steered[self.known_items(user)] = -np.inf
            top = _order_desc(steered, np.argpartition(-steered, n - 1)[:n])
            top_scores = steered[top]
            # Ties count against the test item (SPEC §1.2): rank = #other items scoring >= it.
            rank_after = int(np.count_nonzero(steered >= steered[t])) - 1
        items = [
            RankedItem(rank=r, idx=int(i), score=float(sc), base_rank=depth_pos.get(int(i)))
            for r, (i, sc) in enumerate(zip(top, top_scores, strict=True))
        ]
        base_items = [
            RankedItem(rank=r, idx=int(i), score=float(sc), base_rank=r)
            for r, (i, sc) in enumerate(zip(base_top, self.base_scores[user, :n], strict=True))
        ]
        base_pos = {int(i): r for r, i in enumerate(base_top)}
        top_pos = {int(i): r for r, i in enumerate(top)}
        entered = [i for i in top_pos if i not in base_pos]
        left = [i for i in base_pos if i not in top_pos]
        moved = [
            (i, base_pos[i], r) for i, r in top_pos.items() if i in base_pos and base_pos[i] != r
        ]

        reports = []
        for e, kind in zip(edits, kinds, strict=True):
            mask = self.latent_concept_mask(e.latent)
            reports.append(
                EditReport(
                    latent=e.latent,
                    value=e.value,
                    kind=kind,
                    activation_before=float(z[e.latent]),
                    activation_after=float(z2[e.latent]),
                    concept=self.text.tfidf_concepts[e.latent],
                    presence_before=None if mask is None else int(mask[base_top].sum()),
                    presence_after=None if mask is None else int(mask[top].sum()),
                )
            )
        return SteerResult(
            user=user,
            mode=mode,
            items=items,
            base_items=base_items,
            entered=entered,
            left=left,
            moved=moved,
            edits=reports,
            test_item=t,
            test_rank_before=rank_before,
            test_rank_after=rank_after,
        )

    # -- segment steering ------------------------------------------------------------------

    def _rank_chunk(
        self, users: np.ndarray, X_CD: np.ndarray, depth: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """C users' vectors [C, d] -> top ``depth`` items [C, depth] int64 (list order), their
        scores [C, depth] float32 and the test items' ranks [C] int64, known items masked."""
        scores = X_CD @ self.item_embeddings.T  # [C, I]
        p = self.text.known_indptr
        lengths = p[users + 1] - p[users]
        rows = np.repeat(np.arange(users.size), lengths)
        cols = np.concatenate([self.text.known_indices[p[u] : p[u + 1]] for u in users])
        scores[rows, cols] = -np.inf
        # Candidates sorted by index first, then a stable sort on score: ties break on index.
        cand = np.sort(np.argpartition(-scores, depth - 1, axis=1)[:, :depth], axis=1)
        order = np.argsort(-np.take_along_axis(scores, cand, 1), axis=1, kind="stable")
        top = np.take_along_axis(cand, order, 1)
        t = self.text.test_items[users]
        t_scores = scores[np.arange(users.size), np.maximum(t, 0)]
        ranks = (scores >= t_scores[:, None]).sum(1) - 1
        return top, np.take_along_axis(scores, top, 1), ranks

    def _rank_users(
        self, users: np.ndarray, X_UD: np.ndarray, depth: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_rank_chunk` over any number of users, a memory-bounded chunk at a time."""
        tops = [np.zeros((0, depth), np.int64)]
        scores = [np.zeros((0, depth), np.float32)]
        ranks = [np.zeros(0, np.int64)]
        size = max(1, _SEGMENT_CHUNK_ELEMS // max(self.n_items, 1))
        for start in range(0, users.size, size):
            sl = slice(start, start + size)
            top, sc, rank = self._rank_chunk(users[sl], X_UD[sl], depth)
            tops.append(top)
            scores.append(sc)
            ranks.append(rank)
        return np.concatenate(tops), np.concatenate(scores), np.concatenate(ranks)

    def steer_segment(
        self,
        edits: Sequence[Edit],
        mode: SteerMode | str = SteerMode.ERROR_PRESERVING,
        include_inactive: bool = False,
    ) -> SegmentResult:
        """Apply the same edits to every test-side user (vectorised, in chunks).

        Here every ``value`` is a *scale* in [SCALE_MIN, SCALE_MAX]: users for whom the latent is
        active get z'_l = value * z_l (paper §8); with ``include_inactive`` the others get
        value x the latent's mean non-zero activation, otherwise they are left alone. Reports the
        mean change in NDCG@N of the test item and, per edited latent, the concept presence of
        paper eq. 5 over the users where it is active.
        """
        mode = SteerMode(mode)
        self._check_edits(edits)
        for e in edits:
            if not SCALE_MIN <= e.value <= SCALE_MAX:
                raise SteeringError(
                    f"latent {e.latent}: segment values are scales in "
                    f"[{SCALE_MIN:g}, {SCALE_MAX:g}], got {e.value:g}"
                )
        users = self.text.test_side
        if users.size == 0:
            raise SteeringError(f"run {self.run_id!r} has no test-side users to steer")
        n = min(TOP_N, self.n_items)
        base_top, base_rank = self.base_top[users, :n], self.base_test_rank[users]
        lat = np.asarray([e.latent for e in edits], dtype=np.int64)
        val = np.asarray([e.value for e in edits], dtype=np.float32)
        X = self.user_vectors[users]
        Z = self.encode(X)  # [S, n]
        Zl = Z[:, lat]  # [S, E]
        act = Zl > 0
        fill = val * self.mean_activation[lat].astype(np.float32) if include_inactive else Zl
        new = np.where(act, val * Zl, fill).astype(np.float32)
        aff = (new != Zl).any(axis=1)
        if mode is SteerMode.REPLACE:  # every user's vector becomes a reconstruction
            Z[:, lat] = new
            top_after, _, rank_after = self._rank_users(users, self.decode(Z), n)
        else:  # error-preserving: users with unchanged codes keep exactly their base list
            top_after, rank_after = base_top.copy(), base_rank.copy()
            X2 = X[aff] + (new[aff] - Zl[aff]) @ self.W_dec[lat]
            top_after[aff], _, rank_after[aff] = self._rank_users(users[aff], X2, n)

        def ndcg(r: np.ndarray) -> np.ndarray:
            # NDCG@N of a single relevant item (same as worker.metrics.ranking.per_case_ndcg).
            return np.where(r < TOP_N, 1.0 / np.log2(r + 2.0), 0.0)

        nb, na = ndcg(base_rank), ndcg(rank_after)
        reports = []
        for j, e in enumerate(edits):
            mask = self.latent_concept_mask(e.latent)
            rows = act[:, j]
            n_act = int(rows.sum())
            if mask is None or n_act == 0:
                pb = pa = sb = sa = None
            else:
                hb, ha = mask[base_top[rows]], mask[top_after[rows]]  # [A, N] bool
                pb, pa = float(hb.any(1).mean()), float(ha.any(1).mean())
                sb, sa = float(hb.mean()), float(ha.mean())
            reports.append(
                SegmentLatentReport(
                    latent=e.latent,
                    value=e.value,
                    concept=self.text.tfidf_concepts[e.latent],
                    n_active=n_act,
                    presence_before=pb,
                    presence_after=pa,
                    share_before=sb,
                    share_after=sa,
                )
            )
        return SegmentResult(
            mode=mode,
            n_users=int(users.size),
            n_affected=int(aff.sum()),
            ndcg_before=float(nb.mean()),
            ndcg_after=float(na.mean()),
            ndcg_affected_before=float(nb[aff].mean()) if aff.any() else None,
            ndcg_affected_after=float(na[aff].mean()) if aff.any() else None,
            latents=reports,
        )


@dataclass
class _CacheEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    engine: SteeringEngine | None = None


_CACHE: dict[tuple[str, str, str], _CacheEntry] = {}
_CACHE_LOCK = threading.Lock()


def engine_for_run(session: Session, run: Run) -> SteeringEngine:
    """The run's engine, built on first use and shared by every thread afterwards.

    Keyed by (run id, artifact dir, created_at) so a re-published run gets a fresh engine; the
    per-key lock makes concurrent first requests build it once.
    """
    key = (run.id, str(run.artifact_dir), str(run.created_at))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            for old in [k for k in _CACHE if k[0] == run.id]:
                del _CACHE[old]  # drop engines of earlier publications of this run
            entry = _CACHE[key] = _CacheEntry()
    with entry.lock:
        if entry.engine is None:
            text = load_run_text(session, run)
            entry.engine = SteeringEngine.from_artifacts(run.id, Path(run.artifact_dir), text)
        return entry.engine


def clear_cache() -> None:
    """Forget every loaded engine (tests; memory pressure)."""
    with _CACHE_LOCK:
        _CACHE.clear()
