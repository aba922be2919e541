"""A small, deterministic run published through ``writes.publish_run`` (the worker's path).

Values are arithmetic on indices (no RNG), so tests can state exact expectations: latent ``i``
has density ``(i + 1) / 100``; latents with ``i % 4 == 3`` have no TF-IDF confidence; latent
``i``'s TF-IDF concept is ``CONCEPTS[i % len(CONCEPTS)]`` with confidence ``(i % 10) / 10``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.reports import (
    ConceptCounts,
    Interval,
    PaperReport,
    RecommenderReport,
    RunMetrics,
    SAEReport,
)
from core.store.writes import publish_run

CONCEPTS = ["horror", "comedy", "romance", "sci-fi", "animation"]
GENRES = ["Horror", "Comedy", "Romance", "Sci-Fi", "Animation", "Drama"]


def tfidf_confidence(i: int) -> float | None:
    return None if i % 4 == 3 else (i % 10) / 10


def llm_confidence(i: int) -> float | None:
    return None if i % 2 else round(1 - (i % 5) / 5, 2)


def _ci(mean: float) -> Interval:
    return Interval(mean=mean, lo=round(mean - 0.01, 4), hi=round(mean + 0.01, 4))


def fixture_rows(
    run_id: str = "fixture",
    n_items: int = 12,
    n_users: int = 8,
    n_latents: int = 20,
    k: int = 4,
    artifact_dir: Path | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``publish_run`` describing one small run."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    run = {
        "id": run_id,
        "dataset": "tiny-movies",
        "recommender": "sasrec",
        "created_at": created,
        "artifact_dir": str(artifact_dir or Path("/nonexistent") / run_id),
        "n_users": n_users,
        "n_items": n_items,
        "n_latents": n_latents,
        "k": k,
        "item_category": "movies",
        "item_name": "movie",
        "config": {"sae": {"k": k, "n_latents": n_latents, "seed": 0}, "recommender": {"emb": 64}},
        "metrics": RunMetrics(  # the worker's shape (core.reports), trimmed
            recommender=RecommenderReport(
                test_ci={"ndcg@10": _ci(0.0540), "hr@10": _ci(0.1032)},
                mostpop_test_ci={"ndcg@10": _ci(0.0235), "hr@10": _ci(0.0449)},
            ),
            sae=SAEReport(fvu_test=0.19, pca_fvu_test=0.42, dead_fraction=0.13, l0=k),
            report=PaperReport(
                table4={"sae": ConceptCounts(latents_verified=3, concepts_verified=3)},
                table4_llm={"sae": ConceptCounts(latents_verified=2, concepts_verified=2)},
                table7={
                    "mostpop": {"ndcg@10": _ci(0.0235), "hr@10": _ci(0.0449)},
                    "base": {"ndcg@10": _ci(0.0540), "hr@10": _ci(0.1032)},
                    "sae": {"ndcg@10": _ci(0.0486), "hr@10": _ci(0.0998)},
                    "random_sae": {"ndcg@10": _ci(0.0301), "hr@10": _ci(0.0611)},
                },
            ),
            tuning={"related": {"-10": 0.038, "1": 0.357, "10": 0.475}},  # a key no model names
        ).to_json(),
    }
    items = [
        {
            "idx": i,
            "external_id": str(1000 + i),
            "title": f"Movie {i:02d}",
            "genres": [GENRES[i % len(GENRES)]],
            "tags": [f"tag{i % 3}"],
            "text": f"Movie {i:02d} {GENRES[i % len(GENRES)]}",
            "popularity": 100 - i,
        }
        for i in range(n_items)
    ]
    users = [
        {
            "idx": u,
            "external_id": str(u + 1),
            "history": [(u + j) % n_items for j in range(5)],
            "dev_item": (u + 5) % n_items,
            "test_item": (u + 6) % n_items,
            "side": "test" if u % 2 else "train",
        }
        for u in range(n_users)
    ]
    latents, examples, concepts = [], [], []
    for i in range(n_latents):
        conf = tfidf_confidence(i)
        llm = llm_confidence(i)
        text = CONCEPTS[i % len(CONCEPTS)]
        latents.append(
            {
                "idx": i,
                "density": (i + 1) / 100,
                "max_activation": 1.0 + i / 10,
                "mean_activation": 0.5 + i / 20,
                "dead": i == n_latents - 1,
                "histogram": {"edges": [0.0, 0.5, 1.0, 1.5, 2.0], "counts": [i, 3, 2, 1]},
                "level_edges": [0.1 * j for j in range(1, 10)],
                "n_active_construction": 10 + i,
                "n_active_verification": 3 if i % 4 == 3 else 8,
                "too_rare": i % 4 == 3,
                "promoted": [[(i + j) % n_items, 1.0 - j / 10] for j in range(3)],
                "suppressed": [[(i + 6 + j) % n_items, -1.0 + j / 10] for j in range(3)],
                "tfidf_confidence": conf,
                "tfidf_concept": None if conf is None else text,
                "llm_confidence": llm,
                "llm_concept": None if llm is None else f"films about {text}",
                "tuning": (
                    {
                        "scales": [-10, -5, 0, 1, 5, 10],
                        "related": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                        "other": [0.02] * 6,
                        "n_cases": 7,
                    }
                    if i == 0
                    else {}
                ),
            }
        )
        for r, role in enumerate(("construction", "verification", "random")):
            for e in range(2):
                examples.append(
                    {
                        "latent_idx": i,
                        "role": role,
                        "user_idx": (i + e + r) % n_users,
                        "history": [(i + e + j) % n_items for j in range(4)],
                        "predicted_item": (i + e + r) % n_items,
                        "activation": 0.0 if role == "random" else 2.0 - e / 2 - r / 4,
                        "level": 0 if role == "random" else 10 - e - r,
                    }
                )
        concepts.append(
            {
                "latent_idx": i,
                "method": "tfidf",
                "text": text,
                "terms": [[text, 0.9], ["drama", 0.4], ["classic", 0.2]],
                "confidence": conf,
                "status": "too_rare" if conf is None else "verified",
                "created_at": created,
            }
        )
        if llm is not None:
            concepts.append(
                {
                    "latent_idx": i,
                    "method": "llm",
                    "text": f"films about {text}",
                    "confidence": llm,
                    "status": "verified",
                    "model": "test-model",
                    "created_at": created + timedelta(hours=1),
                }
            )
    cases = [
        {
            "user_idx": u,
            "latent_idx": [(u + j) % n_latents for j in range(k)],
            "latent_val": [1.0 + j / 2 if j < k - 1 else 0.0 for j in range(k)],
            "top_items": [(u + j) % n_items for j in range(10)],
            "top1_item": u % n_items,
        }
        for u in range(n_users)
    ]
    return {
        "run": run,
        "items": items,
        "users": users,
        "latents": latents,
        "examples": examples,
        "concepts": concepts,
        "cases": cases,
    }


def publish_fixture(sessions: sessionmaker[Session], **kwargs: Any) -> dict[str, Any]:
    """Publish :func:`fixture_rows` (same kwargs) and return the rows for expectations."""
    rows = fixture_rows(**kwargs)
    publish_run(sessions, **rows)
    return rows


def remove_run(sessions: sessionmaker[Session], run_id: str) -> None:
    """Take a run out of a shared test database, its studies first: deleting a study is the
    explicit, exporting action (core.study_export.delete_study), and delete_run refuses while any
    exist. The exports go to a temporary folder."""
    import tempfile

    from sqlalchemy import select

    from core.store.schema import Study
    from core.store.writes import delete_run
    from core.study_export import delete_study

    with sessions() as session:
        study_ids = list(session.scalars(select(Study.id).where(Study.run_id == run_id)))
    with tempfile.TemporaryDirectory() as exports:
        for study_id in study_ids:
            delete_study(sessions, study_id, Path(exports))
    with sessions.begin() as session:
        delete_run(session, run_id)
