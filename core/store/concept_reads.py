"""The queries behind a live re-explanation's null (docs/method.md §1.11): the run's other LLM
labels to sample null concepts from."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.schema import Concept

DEGENERATE = "degenerate"  # core.llm.concepts.STATUS_DEGENERATE: a label that names nothing


def other_llm_labels(
    session: Session, run_id: str, run_version: int, latent_idx: int
) -> list[tuple[int, str]]:
    """(latent, text) of the newest LLM label of every other latent of the run's version
    ``run_version`` that names something (non-empty, not degenerate), by latent."""
    rows = session.execute(
        select(Concept.latent_idx, Concept.text)
        .where(
            Concept.run_id == run_id,
            Concept.run_version == run_version,
            Concept.method == "llm",
            Concept.latent_idx != latent_idx,
            Concept.status != DEGENERATE,
            Concept.text != "",
        )
        .order_by(Concept.latent_idx, Concept.created_at.desc(), Concept.id.desc())
    ).all()
    newest: dict[int, str] = {}
    for idx, text in rows:
        newest.setdefault(idx, text)
    return sorted(newest.items())
