"""Fold-in vectors for one-vector models (worker/sae/augment.py, docs/method.md §1.4)."""

from __future__ import annotations

import numpy as np

from worker.sae.augment import FoldInConfig, fold_in, fold_in_vectors, subsample_histories

D, N_ITEMS = 8, 120


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Items, users' true vectors, and histories of each user's 15 best items."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(N_ITEMS, D)).astype(np.float32)
    users = rng.normal(size=(40, D)).astype(np.float32)
    histories = [np.argsort(-(items @ u))[:15] for u in users]
    return items, users, histories


def test_a_folded_in_vector_ranks_its_history_first() -> None:
    items, _, histories = _world()
    config = FoldInConfig(seed=0)
    vecs = fold_in(items, histories, config, np.zeros(D, np.float32), (200,))[200]
    hits = []
    for v, h in zip(vecs, histories, strict=True):
        top = set(np.argsort(-(items @ v))[:15].tolist())
        hits.append(len(top & set(h.tolist())) / 15)
    # chance would be 15/120 = 0.125
    assert np.mean(hits) > 0.7


def test_fold_in_vectors_are_seeded_calibrated_and_counted() -> None:
    items, _, histories = _world()
    # The "model's" vectors: fold-ins of the full histories at 50 steps, so calibration must
    # find 50 among the checkpoints.
    config = FoldInConfig(per_user=3, checkpoints=(10, 50, 200), seed=1)
    learned = fold_in(items, histories, config, np.zeros(D, np.float32), (50,))[50]
    a = fold_in_vectors(items, histories, learned, config)
    b = fold_in_vectors(items, histories, learned, config)
    assert a.vectors.shape == (3 * len(histories), D) and a.n_users == len(histories)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert set(a.calibration_error) == {10, 50, 200}
    assert a.steps == min(a.calibration_error, key=lambda s: a.calibration_error[s])
    assert np.isfinite(a.vectors).all()


def test_subsamples_keep_order_and_stay_inside_the_history() -> None:
    _, _, histories = _world()
    config = FoldInConfig(per_user=5, keep_min=0.2, keep_max=0.5, seed=0)
    subs = subsample_histories(histories, config)
    assert len(subs) == 5 * len(histories)
    for j, sub in enumerate(subs):
        full = histories[j // 5].tolist()
        assert 1 <= len(sub) <= int(round(0.5 * len(full)))
        positions = [full.index(i) for i in sub.tolist()]
        assert positions == sorted(positions)


def test_users_without_history_are_skipped() -> None:
    items, users, histories = _world()
    histories = [*histories[:5], np.zeros(0, np.int64)]
    out = fold_in_vectors(items, histories, users[:6], FoldInConfig(per_user=2, seed=0))
    assert out.n_users == 5 and len(out.vectors) == 10
