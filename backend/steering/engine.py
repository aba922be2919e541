"""The steering engine: one run's SAE, item embeddings and user vectors in memory, numpy only.

Built once per run (:func:`backend.steering.cache.engine_for_run`) and shared by every request,
so a steering request is a handful of BLAS calls over precomputed float32 arrays: no torch, no
Python loop over items. The edit semantics and modes are in :mod:`backend.steering`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from backend.steering.ranking import order_desc, rank_users
from backend.steering.segment import steer_segment
from backend.steering.text import RunText
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
    SegmentResult,
    SteeringError,
    SteerMode,
    SteerResult,
    UnknownLatentError,
    UnknownUserError,
)
from core.rundir import ArtifactError, Published, load_sae_arrays, load_vectors

_ACTIVATION_BATCH = 4096  # users encoded at a time when measuring activation ranges


def _check_shapes(
    run_id: str, sae: dict[str, np.ndarray], k: int, vectors: dict[str, np.ndarray], text: RunText
) -> None:
    """Raise :class:`ArtifactError` unless the SAE, the vectors and the rows agree in size."""
    d, n = sae["W_enc"].shape
    checks = {
        "b_enc": (sae["b_enc"].shape, (n,)),
        "W_dec": (sae["W_dec"].shape, (n, d)),
        "b_dec": (sae["b_dec"].shape, (d,)),
        "item_embeddings": (vectors["item_embeddings"].shape[1:], (d,)),
        "user_vectors": (vectors["user_vectors"].shape[1:], (d,)),
    }
    for name, (got, want) in checks.items():
        if tuple(got) != want:
            raise ArtifactError(f"run {run_id!r}: {name} has shape {got}, expected {want}")
    if not 0 < k <= n:
        raise ArtifactError(f"run {run_id!r}: k={k} must be in [1, {n}]")
    n_items, n_users = len(vectors["item_embeddings"]), len(vectors["user_vectors"])
    if text.n_items != n_items or len(text.test_items) != n_users:
        raise ArtifactError(
            f"run {run_id!r}: database has {text.n_items} items / {len(text.test_items)}"
            f" users, artifacts have {n_items} / {n_users}"
        )
    if len(text.tfidf_concepts) != n:
        raise ArtifactError(f"run {run_id!r}: {len(text.tfidf_concepts)} latents vs d_sae={n}")


class SteeringEngine:
    """One run's steering state; immutable after construction, safe to share across threads.

    Shapes: W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d], item_embeddings [I, d],
    user_vectors [U, d]; n latents, k active per case.
    """

    def __init__(
        self,
        run_id: str,
        sae: dict[str, np.ndarray],
        k: int,
        vectors: dict[str, np.ndarray],
        text: RunText,
    ) -> None:
        """``sae``: W_enc, b_enc, W_dec, b_dec; ``vectors``: item_embeddings, user_vectors."""
        _check_shapes(run_id, sae, k, vectors, text)
        self.run_id = run_id
        self.W_enc, self.b_enc = sae["W_enc"], sae["b_enc"]
        self.W_dec, self.b_dec = sae["W_dec"], sae["b_dec"]
        self.k = k
        self.item_embeddings = vectors["item_embeddings"]
        self.user_vectors = vectors["user_vectors"]
        self.text = text
        self.d, self.n_latents = self.W_enc.shape
        self.n_items, self.n_users = len(self.item_embeddings), len(self.user_vectors)
        self.max_activation, self.mean_activation = self._activation_ranges()
        self._global_max = float(self.max_activation.max()) or 1.0
        # Every user's unsteered list, once, with batched GEMMs: a request then needs a single
        # pass over the item matrix (the steered one) instead of two.
        self.base_top, self.base_scores, self.base_test_rank = rank_users(
            np.arange(self.n_users, dtype=np.int64),
            self.user_vectors,
            self.item_embeddings,
            text,
            min(BASE_DEPTH, self.n_items),
        )
        self._recon: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._recon_lock = threading.Lock()

    def _activation_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per latent [n]: the largest activation over every user (the absolute-value slider's
        range) and the mean non-zero activation (segment steering's fill value)."""
        largest = np.zeros(self.n_latents, np.float32)
        total = np.zeros(self.n_latents, np.float64)
        counts = np.zeros(self.n_latents, np.int64)
        for start in range(0, self.n_users, _ACTIVATION_BATCH):
            z_UN = self.encode(self.user_vectors[start : start + _ACTIVATION_BATCH])
            np.maximum(largest, z_UN.max(axis=0), out=largest)
            total += z_UN.sum(axis=0)
            counts += (z_UN > 0).sum(axis=0)
        return largest, np.where(counts > 0, total / np.maximum(counts, 1), 0.0)

    @classmethod
    def from_artifacts(
        cls, run_id: str, run_dir: Path | Published, text: RunText
    ) -> SteeringEngine:
        """Load a published version's (or a directory's) SAE and vectors (:mod:`core.rundir`:
        digests checked, values finite); :class:`ArtifactError` if anything is wrong."""
        source = run_dir if isinstance(run_dir, Published) else Path(run_dir)
        cfg, sae = load_sae_arrays(source)
        return cls(run_id, sae, int(cfg["k"]), load_vectors(source), text)

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

    def check_edits(self, edits: Sequence[Edit]) -> None:
        """Known latents, each edited once, finite values, at most MAX_EDITS."""
        if len(edits) > MAX_EDITS:
            raise SteeringError(f"at most {MAX_EDITS} edits per request, got {len(edits)}")
        seen: set[int] = set()
        for e in edits:
            self.check_latent(e.latent)
            if e.latent in seen:
                raise SteeringError(f"latent {e.latent} is edited twice", e.latent)
            seen.add(e.latent)
            if not np.isfinite(e.value):
                raise SteeringError(
                    f"latent {e.latent}: value must be finite, got {e.value}", e.latent
                )

    def _apply(self, z: np.ndarray, edits: Sequence[Edit]) -> tuple[np.ndarray, list[str]]:
        """[n] -> [n]: the edited code and each edit's kind; raises on out-of-range values."""
        z2 = z.copy()
        kinds = []
        for e in edits:
            if z[e.latent] > 0:
                if not SCALE_MIN <= e.value <= SCALE_MAX:
                    raise SteeringError(
                        f"latent {e.latent} is active: value is a scale in "
                        f"[{SCALE_MIN:g}, {SCALE_MAX:g}], got {e.value:g}",
                        e.latent,
                    )
                z2[e.latent] = e.value * z[e.latent]
                kinds.append("scale")
            else:
                lim = self.absolute_limit(e.latent)
                if not -lim <= e.value <= lim:
                    raise SteeringError(
                        f"latent {e.latent} is not active: value is an absolute activation in "
                        f"[{-lim:.4g}, {lim:.4g}], got {e.value:g}",
                        e.latent,
                    )
                z2[e.latent] = e.value
                kinds.append("absolute")
        return z2, kinds

    # -- concepts --------------------------------------------------------------------------

    def concept_mask(self, term: str) -> np.ndarray:
        """[I] bool: items whose metadata carries every token of ``term`` (see RunText)."""
        return self.text.concept_mask(term)

    def latent_concept_mask(self, latent: int) -> np.ndarray | None:
        """[I] bool for the latent's TF-IDF concept; None when it has none."""
        concept = self.text.tfidf_concepts[latent]
        return None if not concept else self.text.concept_mask(concept)

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

    def steered_code(
        self, user: int, edits: Sequence[Edit], mode: SteerMode | str = SteerMode.ERROR_PRESERVING
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x [d], z [n], z' [n], x' [d]) of ``user``: the model's vector, its code, the edited
        code and the vector the steered list is scored with (checked like :meth:`steer`)."""
        mode = SteerMode(mode)
        self.check_user(user)
        self.check_edits(edits)
        x = self.user_vectors[user]
        z = self.encode(x)
        z2, _ = self._apply(z, edits)
        if mode is SteerMode.REPLACE or np.any(z2 != z):
            return x, z, z2, self._steered_vector(x, z, z2, mode)
        return x, z, z2, x

    def steered_scores(
        self, user: int, edits: Sequence[Edit], mode: SteerMode | str = SteerMode.ERROR_PRESERVING
    ) -> np.ndarray:
        """[I] float32 scores of every item after the edits, known items at -inf (tests, tools)."""
        _, _, _, x2 = self.steered_code(user, edits, mode)
        scores = self.item_embeddings @ x2
        scores[self.known_items(user)] = -np.inf
        return scores

    def reconstruction_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every user's list from the SAE's reconstruction x̂ = decode(encode(x)): top
        [U, depth], scores [U, depth], test rank [U]. Replace mode's baseline (docs/method.md
        §1.10: the paper's 1× is x̂, so a replace-mode diff shows the edit, not reconstruction
        error). Computed on first use, once per engine."""
        with self._recon_lock:
            if self._recon is None:
                users = np.arange(self.n_users, dtype=np.int64)
                x_hat = np.empty_like(self.user_vectors)
                for start in range(0, self.n_users, _ACTIVATION_BATCH):
                    sl = slice(start, start + _ACTIVATION_BATCH)
                    x_hat[sl] = self.decode(self.encode(self.user_vectors[sl]))
                depth = self.base_top.shape[1]
                self._recon = rank_users(users, x_hat, self.item_embeddings, self.text, depth)
            return self._recon

    @property
    def reconstruction_ready(self) -> bool:
        """Whether :meth:`reconstruction_lists` is computed (async callers compute it in a
        thread first: it ranks every user once, seconds on a large run)."""
        return self._recon is not None

    def baseline_lists(self, mode: SteerMode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The unsteered lists a ``mode`` diff is taken against: x's for error-preserving, x̂'s
        for replace (top [U, depth], scores [U, depth], test rank [U])."""
        if mode is SteerMode.REPLACE:
            return self.reconstruction_lists()
        return self.base_top, self.base_scores, self.base_test_rank

    def _steered_top(
        self, user: int, x2: np.ndarray | None, mode: SteerMode
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(top [N] item idx, their scores [N], the test item's steered rank) for ``x2``; None:
        the code is unchanged, so exactly the mode's baseline list."""
        n = min(TOP_N, self.n_items)
        if x2 is None:
            base_top, base_scores, base_rank = self.baseline_lists(mode)
            return base_top[user, :n], base_scores[user, :n], int(base_rank[user])
        steered = self.item_embeddings @ x2  # [I]: the one pass over the item matrix
        steered[self.known_items(user)] = -np.inf
        top = order_desc(steered, np.argpartition(-steered, n - 1)[:n])
        t = int(self.text.test_items[user])
        # Ties count against the test item (docs/method.md §1.2): #other items scoring >= it.
        return top, steered[top], int(np.count_nonzero(steered >= steered[t])) - 1

    def steer(
        self, user: int, edits: Sequence[Edit], mode: SteerMode | str = SteerMode.ERROR_PRESERVING
    ) -> SteerResult:
        """Rerank every item for ``user`` with ``edits`` applied to the SAE code of its vector."""
        mode = SteerMode(mode)
        self.check_user(user)
        self.check_edits(edits)
        x = self.user_vectors[user]
        z = self.encode(x)
        z2, kinds = self._apply(z, edits)
        unchanged = not np.any(z2 != z)
        x2 = None if unchanged else self._steered_vector(x, z, z2, mode)
        top, top_scores, rank_after = self._steered_top(user, x2, mode)
        n = min(TOP_N, self.n_items)
        base_top_all, base_scores_all, base_rank_all = self.baseline_lists(mode)
        base_top = base_top_all[user, :n]
        depth_pos = {int(i): r for r, i in enumerate(base_top_all[user])}
        base_pos = {int(i): r for r, i in enumerate(base_top)}
        top_pos = {int(i): r for r, i in enumerate(top)}
        return SteerResult(
            user=user,
            mode=mode,
            items=[
                RankedItem(rank=r, idx=int(i), score=float(sc), base_rank=depth_pos.get(int(i)))
                for r, (i, sc) in enumerate(zip(top, top_scores, strict=True))
            ],
            base_items=[
                RankedItem(rank=r, idx=int(i), score=float(sc), base_rank=r)
                for r, (i, sc) in enumerate(zip(base_top, base_scores_all[user, :n], strict=True))
            ],
            entered=[i for i in top_pos if i not in base_pos],
            left=[i for i in base_pos if i not in top_pos],
            moved=[
                (i, base_pos[i], r)
                for i, r in top_pos.items()
                if i in base_pos and base_pos[i] != r
            ],
            edits=[
                self._edit_report(e, kind, z, z2, base_top, top)
                for e, kind in zip(edits, kinds, strict=True)
            ],
            test_item=int(self.text.test_items[user]),
            test_rank_before=int(base_rank_all[user]),
            test_rank_after=rank_after,
        )

    def _edit_report(
        self,
        e: Edit,
        kind: str,
        z: np.ndarray,
        z2: np.ndarray,
        base_top: np.ndarray,
        top: np.ndarray,
    ) -> EditReport:
        """One edit's activations [n] before/after and its concept's presence in both top N."""
        mask = self.latent_concept_mask(e.latent)
        return EditReport(
            latent=e.latent,
            value=e.value,
            kind=kind,
            activation_before=float(z[e.latent]),
            activation_after=float(z2[e.latent]),
            concept=self.text.tfidf_concepts[e.latent],
            presence_before=None if mask is None else int(mask[base_top].sum()),
            presence_after=None if mask is None else int(mask[top].sum()),
        )

    def steer_segment(
        self,
        edits: Sequence[Edit],
        mode: SteerMode | str = SteerMode.ERROR_PRESERVING,
        include_inactive: bool = False,
    ) -> SegmentResult:
        """The same scales for every test-side user (:func:`backend.steering.segment`)."""
        return steer_segment(self, edits, mode, include_inactive)
