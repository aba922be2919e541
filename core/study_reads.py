"""What the study pages show (docs/method.md §5): who sees which study, an annotator's
progress, and a study's results — ratings per method, agreement (core.agreement), the items
annotators disagree on most, and human ratings beside the automatic confidence and its null.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import agreement
from core.store import reads
from core.store.schema import Account, Item, Rating, Run, Study, StudyAnnotator, StudyItem

METHOD_ORDER = ("tfidf", "llm")
MOST_DISAGREED = 10


def visible_studies(session: Session, account: Account) -> list[Study]:
    """Every study for an admin; an annotator's assigned studies only."""
    query = select(Study).order_by(Study.id.desc())
    if account.role != "admin":
        query = query.join(StudyAnnotator, StudyAnnotator.study_id == Study.id).where(
            StudyAnnotator.account_id == account.id
        )
    return list(session.scalars(query))


def annotators(session: Session, study_id: int) -> list[Account]:
    return list(
        session.scalars(
            select(Account)
            .join(StudyAnnotator, StudyAnnotator.account_id == Account.id)
            .where(StudyAnnotator.study_id == study_id)
            .order_by(Account.username)
        )
    )


def items(session: Session, study_id: int) -> list[StudyItem]:
    return list(
        session.scalars(select(StudyItem).filter_by(study_id=study_id).order_by(StudyItem.position))
    )


def item_at(session: Session, study_id: int, position: int) -> StudyItem | None:
    return session.get(StudyItem, (study_id, position))


SHOWN_TAGS = 5  # tags beside a title: enough to say what it is about, short enough to read


def _about(item: Item) -> str:
    """An item's descriptive fields in one line: "Comedy, Romance · tags: quirky, paris"."""
    parts = [", ".join(str(g) for g in item.genres or [])]
    tags = [str(t) for t in (item.tags or [])[:SHOWN_TAGS]]
    if tags:
        parts.append("tags: " + ", ".join(tags))
    return " · ".join(p for p in parts if p)


def examples_shown(session: Session, run_id: str, latent_idx: int) -> dict[str, list[Any]]:
    """The construction and verification examples of a latent of the run's current version, as a
    rater sees them: levels and titles only (no link leads to a page that shows the concept's
    confidence or method), each title with its descriptive fields (genres, a few tags: what a
    concept is about, ``*_about``). A study copies them into its items when it is made, so raters
    see the same examples whatever is published later (docs/architecture.md, human work)."""
    examples = [
        e for e in reads.latent_examples(session, run_id, latent_idx)
        if e.role in ("construction", "verification")
    ]  # fmt: skip
    wanted = [i for e in examples for i in e.history] + [e.predicted_item for e in examples]
    found = reads.items_by_idx(session, run_id, wanted)
    titles = {i: item.title for i, item in found.items()}
    about = {i: _about(item) for i, item in found.items()}
    grouped: dict[str, list[Any]] = {"construction": [], "verification": []}
    for e in examples:
        grouped[e.role].append(
            {
                "level": e.level,
                "predicted": titles.get(e.predicted_item, f"item {e.predicted_item}"),
                "history": [titles.get(i, f"item {i}") for i in e.history],
                "predicted_about": about.get(e.predicted_item, ""),
                "history_about": [about.get(i, "") for i in e.history],
            }
        )
    return grouped


def own_ratings(session: Session, study_id: int, account_id: int) -> dict[tuple[int, int], Rating]:
    """An annotator's ratings in a study by (latent, concept id)."""
    rows = session.scalars(select(Rating).filter_by(study_id=study_id, account_id=account_id))
    return {(r.latent_idx, r.concept_id): r for r in rows}


def rating_counts(session: Session, study_id: int) -> dict[int, int]:
    """Ratings (skips included) per account in a study."""
    rows = session.execute(
        select(Rating.account_id, func.count())
        .filter_by(study_id=study_id)
        .group_by(Rating.account_id)
    )
    return {int(a): int(n) for a, n in rows}


def skip_counts(session: Session, study_id: int) -> dict[int, int]:
    """Skips (a rating without a value, with a reason) per account in a study: the part of
    :func:`rating_counts` that is no rating on the scale."""
    rows = session.execute(
        select(Rating.account_id, func.count())
        .filter_by(study_id=study_id)
        .where(Rating.value.is_(None))
        .group_by(Rating.account_id)
    )
    return {int(a): int(n) for a, n in rows}


def _distribution(values: list[int], skips: int) -> dict[str, Any]:
    counts = {str(v): values.count(v) for v in agreement.SCALE}
    return {
        "mean": float(np.mean(values)) if values else None,
        "n": len(values),
        "skips": skips,
        "counts": counts,
    }


def _matrix(study_items: list[StudyItem], ratings: list[Rating], names: dict[int, str]) -> tuple:
    """Annotators (those who rated anything) × items, NaN where not rated or skipped."""
    col = {(i.latent_idx, i.concept_id): k for k, i in enumerate(study_items)}
    raters = sorted({r.account_id for r in ratings}, key=lambda a: names.get(a, str(a)))
    row = {a: k for k, a in enumerate(raters)}
    matrix = np.full((len(raters), len(study_items)), np.nan)
    for r in ratings:
        if r.value is not None:
            matrix[row[r.account_id], col[(r.latent_idx, r.concept_id)]] = r.value
    return matrix, [names.get(a, f"account {a}") for a in raters]


def _item_row(item: StudyItem, values: np.ndarray, raters: list[str]) -> dict[str, Any]:
    known = values[~np.isnan(values)]
    return {
        "position": item.position,
        "latent_idx": item.latent_idx,
        "concept_id": item.concept_id,
        "method": item.method,
        "text": item.text,
        "confidence": item.confidence,
        "null_p95": item.null_p95,
        "null_p": item.null_p,
        "null_n": item.null_n,
        "verdict": item.verdict,
        "human_mean": float(known.mean()) if known.size else None,
        "n": int(known.size),
        "spread": float(known.std()) if known.size >= 2 else None,
        "ratings": {
            n: (None if np.isnan(v) else int(v)) for n, v in zip(raters, values, strict=True)
        },
    }


def results(session: Session, study: Study) -> dict[str, Any]:
    """Everything the results page shows, as plain data (docs/method.md §5)."""
    study_items = items(session, study.id)
    ratings = list(session.scalars(select(Rating).filter_by(study_id=study.id)))
    names: dict[int, str] = {i: n for i, n in session.execute(select(Account.id, Account.username))}
    matrix, raters = _matrix(study_items, ratings, names)
    by_item = [_item_row(i, matrix[:, k], raters) for k, i in enumerate(study_items)]
    methods = [m for m in METHOD_ORDER if any(i.method == m for i in study_items)]
    per_method: dict[str, Any] = {}
    for m in methods:
        cols = [k for k, i in enumerate(study_items) if i.method == m]
        in_m = {(i.latent_idx, i.concept_id) for i in study_items if i.method == m}
        mine = [r for r in ratings if (r.latent_idx, r.concept_id) in in_m]
        per_method[m] = {
            **_distribution(
                [r.value for r in mine if r.value is not None], sum(r.value is None for r in mine)
            ),
            "agreement": agreement.summary(matrix[:, cols], raters),
            "spearman": agreement.spearman(
                [by_item[k]["human_mean"] for k in cols], [by_item[k]["confidence"] for k in cols]
            ),
        }
    overall = _distribution(
        [r.value for r in ratings if r.value is not None], sum(r.value is None for r in ratings)
    )
    disagreed = sorted(
        (r for r in by_item if r["spread"]), key=lambda r: (-r["spread"], r["position"])
    )
    return {
        "raters": raters,
        "overall": overall,
        "per_method": per_method,
        "agreement": agreement.summary(matrix, raters),
        "spearman_all": agreement.spearman(
            [r["human_mean"] for r in by_item], [r["confidence"] for r in by_item]
        ),
        "most_disagreed": disagreed[:MOST_DISAGREED],
        "human_vs_automatic": _by_latent(by_item),
        "items": by_item,
    }


def _by_latent(by_item: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per latent: each method's concept, its mean human rating, confidence and null p95."""
    grouped: dict[int, dict[str, Any]] = defaultdict(dict)
    for row in by_item:
        grouped[row["latent_idx"]][row["method"]] = {
            k: row[k]
            for k in (
                "text",
                "human_mean",
                "n",
                "confidence",
                "null_p95",
                "null_p",
                "null_n",
                "verdict",
            )
        }
    return [{"latent_idx": idx, **grouped[idx]} for idx in sorted(grouped)]


def export_rows(session: Session, study: Study) -> list[dict[str, Any]]:
    """One row per rating (skips too), for the CSV export."""
    by_key = {(i.latent_idx, i.concept_id): i for i in items(session, study.id)}
    names: dict[int, str] = {i: n for i, n in session.execute(select(Account.id, Account.username))}
    rows = session.scalars(
        select(Rating)
        .filter_by(study_id=study.id)
        .order_by(Rating.latent_idx, Rating.concept_id, Rating.account_id)
    )
    out = []
    for r in rows:
        item = by_key[(r.latent_idx, r.concept_id)]
        out.append(
            {
                "study_id": study.id,
                "run_id": study.run_id,
                "annotator": names.get(r.account_id),
                "position": item.position,
                "latent_idx": r.latent_idx,
                "concept_id": r.concept_id,
                "method": item.method,
                "concept": item.text,
                "confidence": item.confidence,
                "null_p95": item.null_p95,
                "null_p": item.null_p,
                "null_n": item.null_n,
                "verdict": item.verdict,
                "rating": r.value,
                "skip_reason": r.skip_reason,
                "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            }  # fmt: skip
        )
    return out


def closed_human_means(session: Session, run_id: str, latent_idx: int) -> dict[str, dict[str, Any]]:
    """For the latent page: per "method:concept text", the mean human rating over the closed
    studies of the run that rated it (skips left out), and how many ratings."""
    rows = session.execute(
        select(StudyItem.method, StudyItem.text, func.avg(Rating.value), func.count(Rating.value))
        .join(Study, Study.id == StudyItem.study_id)
        .join(
            Rating,
            (Rating.study_id == StudyItem.study_id)
            & (Rating.latent_idx == StudyItem.latent_idx)
            & (Rating.concept_id == StudyItem.concept_id),
        )
        .join(Run, Run.id == Study.run_id)
        .where(
            Study.run_id == run_id,
            Study.status == "closed",
            StudyItem.latent_idx == latent_idx,
            # a study of an earlier version rated another latent with this index
            Study.run_version == Run.version,
        )
        .group_by(StudyItem.method, StudyItem.text)
    )
    return {
        f"{m}:{t}": {"mean": float(avg), "n": int(n)}
        for m, t, avg, n in rows
        if n and avg is not None
    }


def human_evaluation_table(session: Session, run_id: str) -> list[dict[str, Any]]:
    """The paper's human-evaluation table (paper §5.4) for each closed study of a run: latents,
    annotators, mean rating per method, mean Cohen's κ (unweighted, quadratic), Fleiss' κ, α."""
    closed = session.scalars(
        select(Study).where(Study.run_id == run_id, Study.status == "closed").order_by(Study.id)
    )
    table = []
    for study in closed:
        res = results(session, study)
        table.append(
            {
                "study_id": study.id,
                "name": study.name,
                "run_version": study.run_version,
                "latents": len(res["human_vs_automatic"]),
                "annotators": len(res["raters"]),
                "mean_rating": {m: v["mean"] for m, v in res["per_method"].items()},
                "mean_rating_all": res["overall"]["mean"],
                "cohen_unweighted": res["agreement"]["cohen"]["mean_unweighted"]["value"],
                "cohen_quadratic": res["agreement"]["cohen"]["mean_quadratic"]["value"],
                "fleiss": res["agreement"]["fleiss"]["value"],
                "krippendorff_ordinal": res["agreement"]["krippendorff_ordinal"]["value"],
            }
        )
    return table
