"""Latents: the sortable, filterable list of a run's latents and one latent's page."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BeforeValidator, Field

from backend import figures, urls
from backend.deps import TEXT_FILTER_MAX, Context, LatentDep, RunDep, SessionDep, page
from backend.errors import responses
from backend.nulls import summary_trust, trust, verdict_of
from backend.output_check import output_label, output_of
from backend.report import run_summary
from backend.routes.lenses import nearest_inline
from core import study_reads
from core.store import browse, reads
from core.store.browse import CONFOUND_MIN, Confound, Output
from core.store.reads import ROLE_ORDER, ConceptMethod, LatentSort, SortOrder
from core.store.schema import Concept, Item, Latent

router = APIRouter(tags=["latents"])


def latent_row(run_id: str, latent: Latent) -> dict[str, Any]:
    """A latent as the list (and its JSON twin) shows it."""
    return {
        "idx": latent.idx,
        "url": urls.latent(run_id, latent.idx),
        "density": latent.density,
        "max_activation": latent.max_activation,
        "mean_activation": latent.mean_activation,
        "dead": latent.dead,
        "too_rare": latent.too_rare,
        "tfidf_concept": latent.tfidf_concept,
        "tfidf_confidence": latent.tfidf_confidence,
        "llm_concept": latent.llm_concept,
        "llm_confidence": latent.llm_confidence,
        # Each shown concept's verdict and null (docs/method.md §1.11): the badge follows it.
        **{
            f"{m}_{key}": value
            for m in ("tfidf", "llm")
            for key, value in verdict_of(
                getattr(latent, f"{m}_verdict"),
                getattr(latent, f"{m}_null_p"),
                getattr(latent, f"{m}_null_n"),
            ).items()
        },
        # Each shown concept's output check (docs/method.md §1.9; None: not checked).
        **{
            f"{m}_{key}": value
            for m in ("tfidf", "llm")
            for key, value in (
                ("output", getattr(latent, f"{m}_output")),
                ("output_label", output_label(getattr(latent, f"{m}_output"))),
            )
        },
        # Confound correlations (NULL: not computed) and which are strong enough to flag.
        "popularity_corr": latent.popularity_corr,
        "activity_corr": latent.activity_corr,
        "confounds": browse.confound_flags(latent.popularity_corr, latent.activity_corr),
    }


def _blank_is_none(value: object) -> object:
    # A form sent without JavaScript carries its empty fields (``method=&min_confidence=``):
    # an empty field is no filter, not an invalid one.
    return None if value == "" else value


Blank = BeforeValidator(_blank_is_none)


def _blank_allowed(schema: dict[str, Any]) -> None:
    """The schema of a ``Blank`` parameter: an empty value is allowed (and means no filter)."""
    schema.setdefault("anyOf", []).append({"type": "string", "maxLength": 0})


Fraction = Annotated[float, Field(ge=0, le=1)]
SORT_KEYS = ("id", "density", "confidence", "llm_confidence")


@page(router, "/runs/{run_id}/latents", "latents.html", name="latents", responses=responses(404))
def latent_list(
    run: RunDep,
    session: SessionDep,
    sort: Annotated[LatentSort, Query(alias="_sort")] = "confidence",
    order: Annotated[SortOrder, Query(alias="_order")] = "desc",
    page_no: Annotated[
        int, Query(alias="_page", ge=1, description="page number; past the last shows the last")
    ] = 1,
    size: Annotated[int, Query(alias="_size", ge=1, le=500)] = 50,
    q: Annotated[
        str | None, Query(max_length=TEXT_FILTER_MAX, description="substring of the concept text")
    ] = None,
    min_confidence: Annotated[
        Fraction | None,
        Blank,
        Query(
            description="confidence floor, 0–1; empty: no floor", json_schema_extra=_blank_allowed
        ),
    ] = None,
    method: Annotated[
        ConceptMethod | None,
        Blank,
        Query(
            description="only latents with a concept by this method (q, floor: its concept)",
            json_schema_extra=_blank_allowed,
        ),
    ] = None,
    verified: Annotated[
        bool | None,
        Blank,
        Query(
            description="true: only latents whose concept is verified (confidence >= 0.8 and its "
            "null's rank p <= 0.05 over >= 19 draws, docs/method.md §1.11); false: only the "
            "others; with method, that method's concept",
            json_schema_extra=_blank_allowed,
        ),
    ] = None,
    output: Annotated[
        Output | None,
        Blank,
        Query(
            description="the output check of the shown concept (docs/method.md §1.9): "
            "confirmed (steering ±5x moves its share in the top 10 both ways, paired 95% CIs "
            "excluding 0), refuted, or too_few (fewer than 20 evaluation users); with method, "
            "that method's concept; latents not checked match none",
            json_schema_extra=_blank_allowed,
        ),
    ] = None,
    confound: Annotated[
        Confound | None,
        Blank,
        Query(
            description=f"confound flag: |r| >= {CONFOUND_MIN} with popularity, activity, either "
            "(any), or both computed and below (none)",
            json_schema_extra=_blank_allowed,
        ),
    ] = None,
) -> Context:
    """A run's latents: sort by confidence, density or id; filter by concept text; paginated."""
    also = [browse.confound_where(confound)] if confound else []
    if output:
        also.append(browse.output_where(output, method))

    def fetch(number: int) -> tuple[list[Latent], int]:
        return reads.list_latents(
            session,
            run.id,
            sort=sort,
            order=order,
            q=q or None,
            min_confidence=min_confidence,
            method=method,
            verified=verified,
            page=number,
            per_page=size,
            also=also,
        )

    # A page past the last (however large the number) shows the last, and says so: the offset
    # the database sees stays within the data.
    asked = page_no
    rows, total = fetch(min(page_no, max(1, math.ceil(run.n_latents / size))))
    pages = max(1, math.ceil(total / size))
    if page_no > pages:
        page_no = pages
        rows, total = fetch(page_no)
    filters = {
        "q": q or None, "min_confidence": min_confidence, "method": method, "verified": verified
    }  # fmt: skip
    here = urls.latents(
        run.id, _sort=sort, _order=order, _size=size, **filters, confound=confound, output=output
    )
    return {
        "run": run_summary(run),
        "filters": {
            **filters,
            "q": q or "",
            "confound": confound,
            "output": output,
            "sort": sort,
            "order": order,
            "page": page_no,
            "size": size,
        },
        "clamped": None if asked == page_no else {"asked": asked, "shown": page_no},
        "confound_min": CONFOUND_MIN,
        "total": total,
        "pages": pages,
        "latents": [latent_row(run.id, lat) for lat in rows],
        "links": urls.list_links(here, page_no, pages, sort, order, tuple(SORT_KEYS)),
    }


def _item_ref(run_id: str, idx: int, items: dict[int, Item]) -> dict[str, Any]:
    item = items.get(idx)
    return {
        "idx": idx,
        "title": item.title if item else f"(unknown item {idx})",
        "url": urls.item(run_id, idx),
    }


def _by_weight(terms: list[Any] | None) -> list[Any] | None:
    """TF-IDF terms ``[[term, weight], ...]`` heaviest first (as the worker stored them, a term
    picked for the concept could come before a heavier one); terms without a weight last."""
    if not terms:
        return terms

    def weight(t: Any) -> float:
        w = t[1] if isinstance(t, list | tuple) and len(t) > 1 else None
        return float(w) if isinstance(w, int | float) else float("-inf")

    return sorted(terms, key=weight, reverse=True)


def _concept(c: Concept) -> dict[str, Any]:
    return {
        "id": c.id,
        "method": c.method,
        "text": c.text,
        "terms": _by_weight(c.terms),
        "confidence": c.confidence,
        "status": c.status,
        "model": c.model,
        "created_at": c.created_at.isoformat() if c.created_at else None,
        "source": c.source,  # pipeline / web
        "run_version": c.run_version,  # the run version whose latent it explains
        **output_of(c.text, c.output),  # its output check (docs/method.md §1.9)
        **trust(c.confidence, c.details, c.status),  # its null and verdict (docs/method.md §1.11)
    }


@page(
    router, "/runs/{run_id}/latents/{idx}", "latent.html", name="latent", responses=responses(404)
)
def latent_page(run: RunDep, latent: LatentDep, session: SessionDep) -> Context:
    """One latent: concepts with history, activations, examples, decoder items, tuning."""
    examples = reads.latent_examples(session, run.id, latent.idx)
    concepts = reads.latent_concepts(session, run.id, latent.idx)
    wanted = [i for ex in examples for i in ex.history] + [ex.predicted_item for ex in examples]
    wanted += [row[0] for row in (latent.promoted or []) + (latent.suppressed or [])]
    items = reads.items_by_idx(session, run.id, wanted)

    grouped: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLE_ORDER}
    for ex in examples:
        grouped.setdefault(ex.role, []).append(
            {
                "user_idx": ex.user_idx,
                "user_url": urls.user(run.id, ex.user_idx),
                "activation": ex.activation,
                "level": ex.level,
                "predicted": _item_ref(run.id, ex.predicted_item, items),
                "history": [_item_ref(run.id, i, items) for i in ex.history],
            }
        )

    def decoder_items(rows: list[Any]) -> list[dict[str, Any]]:
        return [{**_item_ref(run.id, int(i), items), "score": s} for i, s in rows]

    best: dict[str, dict[str, Any]] = {
        "tfidf": {"text": latent.tfidf_concept, "confidence": latent.tfidf_confidence},
        "llm": {"text": latent.llm_concept, "confidence": latent.llm_confidence},
    }
    human = study_reads.closed_human_means(session, run.id, latent.idx)
    for method, summary in best.items():
        current = [c for c in concepts if c.method == method and c.run_version == run.version]
        latest = current[0] if current else None  # earlier versions' history: other latents
        summary["latest"] = _concept(latest) if latest else None
        summary.update(summary_trust(summary, current))  # the shown concept's null, verdict
        shown = next((c for c in current if c.id == summary["concept_id"]), None) or next(
            (c for c in current if summary["text"] and c.text == summary["text"]), None
        )
        # ... and its output check (docs/method.md §1.9)
        summary.update(output_of(summary["text"], shown.output if shown else None))
        # Its mean human rating, once rated in a closed study (docs/method.md §5).
        summary["human"] = human.get(f"{method}:{summary['text']}")

    return {
        "run": run_summary(run),
        "latent": {
            **latent_row(run.id, latent),
            "n_active_construction": latent.n_active_construction,
            "n_active_verification": latent.n_active_verification,
            "level_edges": latent.level_edges,
            "histogram": latent.histogram,
            "tuning": latent.tuning,
        },
        "concepts": best,
        "history": [
            {**_concept(c), "from_version": None if c.run_version == run.version else c.run_version}
            for c in concepts
        ],
        "examples": grouped,
        "neighbours": nearest_inline(session, run, latent.idx),
        "promoted": decoder_items(latent.promoted or []),
        "suppressed": decoder_items(latent.suppressed or []),
        "figures": {
            "histogram": figures.activation_histogram(latent),
            "tuning": figures.tuning_curve(latent.tuning or {}),
        },
        "links": {
            "prev": urls.latent(run.id, latent.idx - 1) if latent.idx > 0 else None,
            "next": urls.latent(run.id, latent.idx + 1) if latent.idx + 1 < run.n_latents else None,
            "list": urls.latents(run.id),
        },
    }
