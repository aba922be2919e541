"""A synthetic run with planted tag concepts (artifacts + database rows), for steering.

The steering tests build their fixture run with :func:`make_run`, and ``benchmarks/steer.py``
builds its 100,000-item run with it too. The SAE is written in SAELens's layout under the file
names of :mod:`core.rundir`, so the run is loaded exactly as a worker-made one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sqlalchemy.orm import Session, sessionmaker

from backend.steering import SteeringEngine, engine_for_run
from core import rundir
from core.settings import Settings
from core.store import migrate
from core.store.engine import session_factory
from core.store.writes import publish_run

GENRES = [
    "action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama",
    "fantasy", "horror", "musical", "mystery", "romance", "scifi", "thriller", "war", "western",
]  # fmt: skip
WORDS = ["night", "river", "city", "dream", "story", "king", "love", "last", "dark", "summer"]


@dataclass
class SyntheticRun:
    run_id: str
    artifact_dir: Path
    tags: list[str]  # tag t is the TF-IDF concept of latent t (t < len(tags))
    item_tags: np.ndarray  # [n_items, 2] tag indices
    test_users: np.ndarray  # user idx on the test side


def make_run(
    data_dir: Path,
    sessions: sessionmaker[Session],
    run_id: str = "steer-synthetic",
    n_items: int = 2000,
    n_users: int = 200,
    d: int = 64,
    n_latents: int = 1024,
    k: int = 8,
    n_tags: int = 60,
    seed: int = 0,
    examples_per_role: int = 0,
) -> SyntheticRun:
    """Write ``<data_dir>/runs/<run_id>/`` (SAELens-style SAE + vectors) and publish its rows.

    Realistic structure rather than pure noise: every tag has a unit direction; the first
    ``n_tags`` decoder rows are those directions (so latent t's concept is tag t), the rest
    random unit vectors; W_enc = W_dec^T. Items carry 2 tags (Zipf popularity) and embed as the
    sum of their tag directions plus noise; users prefer 2 tags, and their vectors, histories and
    test items follow those preferences. ``examples_per_role`` > 0 also stores that many
    construction / verification / random examples per latent (users' last 20 items, as the worker
    stores them), for benchmarks of the latent page; they come from their own generator, so the
    rest of the run is the same either way.
    """
    if n_tags > n_latents:
        raise ValueError(f"n_tags ({n_tags}) must be <= n_latents ({n_latents})")
    rng = np.random.default_rng(seed)
    tags = (GENRES + [f"theme{t:03d}" for t in range(n_tags)])[:n_tags]
    T = rng.standard_normal((n_tags, d)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    W_dec = rng.standard_normal((n_latents, d)).astype(np.float32)
    W_dec[:n_tags] = T
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    W_enc = np.ascontiguousarray(W_dec.T)
    b_enc = np.zeros(n_latents, np.float32)
    b_dec = (0.05 * rng.standard_normal(d)).astype(np.float32)

    tag_p = 1.0 / np.arange(1, n_tags + 1) ** 0.7
    tag_p /= tag_p.sum()
    item_tags = np.stack(
        [rng.choice(n_tags, size=2, replace=False, p=tag_p) for _ in range(n_items)]
    )
    E = T[item_tags].sum(1) + 0.6 * rng.standard_normal((n_items, d)).astype(np.float32)
    E = E.astype(np.float32)
    items_with = [np.flatnonzero((item_tags == t).any(1)) for t in range(n_tags)]

    user_tags = np.stack(
        [rng.choice(n_tags, size=2, replace=False, p=tag_p) for _ in range(n_users)]
    )
    strength = rng.uniform(0.5, 2.0, size=(n_users, 2, 1)).astype(np.float32)
    X = (T[user_tags] * strength).sum(1) + 0.3 * rng.standard_normal((n_users, d))
    X = (X + b_dec).astype(np.float32)

    users, test_users = [], []
    for u in range(n_users):
        pool = np.concatenate([items_with[t] for t in user_tags[u]])
        length = int(rng.integers(8, 40))
        seq = rng.choice(pool, size=min(length + 2, pool.size), replace=False)
        side = "test" if u % 2 == 0 else "train"
        if side == "test":
            test_users.append(u)
        users.append(
            {
                "idx": u,
                "external_id": f"u{u}",
                "history": [int(i) for i in seq[:-2]],
                "dev_item": int(seq[-2]),
                "test_item": int(seq[-1]),
                "side": side,
            }
        )
    popularity = np.bincount(
        np.concatenate([np.asarray(u["history"], dtype=np.int64) for u in users]),
        minlength=n_items,
    )
    items = []
    for i in range(n_items):
        t0, t1 = (tags[t] for t in item_tags[i])
        title = f"The {WORDS[i % len(WORDS)].title()} {i}"
        genres = [t for t in (t0, t1) if t in GENRES]
        item_tag_list = [t for t in (t0, t1) if t not in GENRES]
        items.append(
            {
                "idx": i,
                "external_id": str(i),
                "title": title,
                "genres": genres,
                "tags": item_tag_list,
                "text": " ".join([title, *genres, *item_tag_list]),
                "popularity": int(popularity[i]),
            }
        )
    latents = [
        {
            "idx": j,
            "density": 0.01,
            "max_activation": 1.0,
            "mean_activation": 0.5,
            "tfidf_concept": tags[j] if j < n_tags else None,
            "tfidf_confidence": 0.9 if j < n_tags else None,
            "llm_concept": f"{tags[j]} titles" if j < n_tags else None,
            # the latent map (docs/method.md §6.2): here the decoder direction's first two axes
            "map_x": float(W_dec[j, 0]),
            "map_y": float(W_dec[j, 1]),
        }
        for j in range(n_latents)
    ]

    art = Path(data_dir) / "runs" / run_id
    sae_dir = art / rundir.SAE_DIR
    sae_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"d_in": d, "d_sae": n_latents, "k": k, "architecture": "topk"}
    (sae_dir / rundir.SAE_CFG).write_text(json.dumps(cfg))
    save_file(
        {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec},
        str(sae_dir / rundir.SAE_WEIGHTS),
    )
    save_file({"item_embeddings": E, "user_vectors": X}, str(art / rundir.VECTORS))
    run = {
        "id": run_id,
        "dataset": "synthetic",
        "recommender": "synthetic",
        "artifact_dir": str(art),
        "n_users": n_users,
        "n_items": n_items,
        "n_latents": n_latents,
        "k": k,
        "item_category": "movies",
        "item_name": "movie",
    }
    examples = _examples(users, n_items, n_latents, examples_per_role, seed)
    publish_run(sessions, run, items, users, latents, examples, [], [])
    return SyntheticRun(run_id, art, tags, item_tags, np.asarray(test_users, dtype=np.int64))


def _examples(
    users: list[dict], n_items: int, n_latents: int, per_role: int, seed: int
) -> list[dict]:
    rng = np.random.default_rng([seed, 1])
    out = []
    for j in range(n_latents):
        for role in ("construction", "verification", "random"):
            for rank, u in enumerate(rng.integers(len(users), size=per_role)):
                active = role != "random"
                out.append(
                    {
                        "latent_idx": j,
                        "role": role,
                        "user_idx": int(u),
                        "history": users[u]["history"][-20:],
                        "predicted_item": int(rng.integers(n_items)),
                        "activation": 2.0 / (rank + 1) if active else 0.0,
                        "level": 10 - rank if active else 0,
                    }
                )
    return out


def steerable_run(
    data_dir: Path, run_id: str, seed: int, n_items: int = 400, n_users: int = 40
) -> tuple[Settings, SyntheticRun]:
    """A migrated SQLite database in ``data_dir`` holding one steerable synthetic run (d = 16,
    64 latents, k = 4, 12 tags), and the settings that read it (TestClient and loopback)."""
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'recsae.db'}",
        allowed_hosts=["testserver", "localhost", "127.0.0.1", "[::1]"],
    )
    migrate.upgrade(settings.resolved_database_url)
    run = make_run(
        data_dir,
        session_factory(settings.resolved_database_url),
        run_id,
        n_items=n_items,
        n_users=n_users,
        d=16,
        n_latents=64,
        k=4,
        n_tags=12,
        seed=seed,
    )
    return settings, run


def run_engine(settings: Settings, run_id: str) -> SteeringEngine:
    """The served steering engine of ``run_id`` (built on first use, as a request builds it)."""
    from core.store.schema import Run

    with session_factory(settings.resolved_database_url)() as session:
        run = session.get(Run, run_id)
        assert run is not None, f"no run {run_id!r} in {settings.resolved_database_url}"
        return engine_for_run(session, run)


def run_arrays(run: SyntheticRun) -> dict[str, np.ndarray]:
    """The run's SAE (W_enc, b_enc, W_dec, b_dec) and vectors (item_embeddings, user_vectors)
    read back from its safetensors in float64, independently of the engine (the tests'
    reference)."""
    files = (
        run.artifact_dir / rundir.SAE_DIR / rundir.SAE_WEIGHTS,
        run.artifact_dir / rundir.VECTORS,
    )
    return {name: a.astype(np.float64) for f in files for name, a in load_file(str(f)).items()}
