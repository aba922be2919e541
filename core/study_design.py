"""Designing a study (docs/method.md §5): sample (or take the designer's list of) latents with a
concept of the chosen method(s) at the minimum confidence, store the study with its items, assign
annotators, open and close it. Rating it is core.studies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from core import safe_text
from core.reports import (
    VERDICT_DEGENERATE,
    VERDICTS,
    details_null_n,
    details_null_p95,
    details_null_p_any,
    verdict,
)
from core.store.schema import Account, Concept, Run, Study, StudyAnnotator, StudyItem
from core.study_errors import StudyError, StudyNotFound
from core.study_reads import examples_shown

METHODS = {"tfidf": ("tfidf",), "llm": ("llm",), "both": ("tfidf", "llm")}
DEFAULT_SIZE, DEFAULT_MIN_CONFIDENCE, DEFAULT_METHODS = 100, 0.8, "both"
MAX_SIZE = 5000
CANDIDATES_SHOWN = 300  # the designer's filter lists at most this many latents (page weight)


def _best_concepts(session: Session, run: Run, methods: tuple[str, ...], minimum: float) -> dict:
    """{latent idx: {method: Concept}}: per latent and method the highest-confidence concept of
    the run's current version with confidence >= ``minimum`` (ties: the newest)."""
    rows = session.scalars(
        select(Concept)
        .where(
            Concept.run_id == run.id,
            Concept.run_version == run.version,
            Concept.method.in_(methods),
            Concept.confidence >= minimum,
        )
        .order_by(Concept.confidence.desc(), Concept.id.desc())
    )
    best: dict[int, dict[str, Concept]] = {}
    for concept in rows:
        best.setdefault(concept.latent_idx, {}).setdefault(concept.method, concept)
    return best


def candidates(
    session: Session,
    run_id: str,
    *,
    methods: str = DEFAULT_METHODS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    text: str = "",
    verdict_code: str | None = None,
    limit: int = CANDIDATES_SHOWN,
) -> tuple[list[dict[str, Any]], int]:
    """The designer's filter (docs/method.md §5): the latents a study of ``methods`` at
    ``min_confidence`` may rate, each with the concepts :func:`create_study` would take (its
    best per method), narrowed to latents with one such concept whose text contains ``text``
    (case-insensitive) and, given ``verdict_code`` (``core.reports.VERDICTS``), whose verdict is
    that. Latent order; at most ``limit`` rows, and how many match."""
    if methods not in METHODS:
        raise StudyError(f"methods must be one of {', '.join(METHODS)}, not {methods!r}")
    if verdict_code is not None and verdict_code not in VERDICTS:
        raise StudyError(f"a verdict is one of {', '.join(VERDICTS)}, not {verdict_code!r}")
    run = session.get(Run, run_id)
    if run is None:
        raise StudyNotFound(f"unknown run {run_id!r}")
    wanted = text.strip().casefold()
    rows: list[dict[str, Any]] = []
    best = _best_concepts(session, run, METHODS[methods], min_confidence)
    for idx in sorted(best):
        concepts = []
        for method in METHODS[methods]:
            c = best[idx].get(method)
            if c is not None:
                code = verdict(c.confidence, c.details, c.status == VERDICT_DEGENERATE)
                concepts.append(
                    {"method": method, "text": c.text, "confidence": c.confidence, "verdict": code}
                )
        if any(
            wanted in c["text"].casefold() and verdict_code in (None, c["verdict"])
            for c in concepts
        ):
            rows.append({"latent": idx, "concepts": concepts})
    return rows[:limit], len(rows)


def _check_params(size: int, min_confidence: float, methods: str, name: str) -> None:
    if methods not in METHODS:
        raise StudyError(f"methods must be one of {', '.join(METHODS)}, not {methods!r}")
    if not 1 <= size <= MAX_SIZE:
        raise StudyError(f"size must be between 1 and {MAX_SIZE} latents, not {size}")
    if not 0 <= min_confidence <= 1:
        raise StudyError(f"the minimum confidence is a share in [0, 1], not {min_confidence}")
    if not name.strip() or len(name) > 128:
        raise StudyError("give the study a name of 1–128 characters")
    try:  # no control or bidi characters (NUL included): core/safe_text.py
        safe_text.check_name(name, "the study's name")
    except ValueError as exc:
        raise StudyError(str(exc)) from None


def _listed(
    latents: list[int], best: dict[int, Any], run: Run, methods: tuple[str, ...], floor: float
) -> list[int]:
    """The designer's latents, each once in the order given; refuses the list (naming each
    latent and why) when one does not exist or has no concept of ``methods`` at ``floor``."""
    chosen = list(dict.fromkeys(int(i) for i in latents))
    if len(chosen) > MAX_SIZE:
        raise StudyError(f"list at most {MAX_SIZE} latents, not {len(chosen)}")
    unknown = [i for i in chosen if not 0 <= i < run.n_latents]
    if unknown:
        raise StudyError(
            f"run {run.id!r} has latents 0 to {run.n_latents - 1}; there is no latent "
            f"{', '.join(map(str, unknown))}"
        )
    without = [i for i in chosen if i not in best]
    if without:
        raise StudyError(
            f"latent {', '.join(map(str, without))} has no {' or '.join(methods)} concept with "
            f"confidence >= {floor}: remove it from the list or lower the minimum"
        )
    return chosen


def create_study(
    sessions: sessionmaker[Session],
    run_id: str,
    name: str,
    *,
    size: int = DEFAULT_SIZE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    methods: str = DEFAULT_METHODS,
    seed: int = 0,
    created_by: int | None = None,
    annotators: list[str] | None = None,
    latents: list[int] | None = None,
) -> int:
    """Sample the study's items (seeded: the same arguments give the same items) and store it,
    open, with the given annotators assigned; returns its id. Fewer than ``size`` latents
    qualify: all of them are taken. ``latents``: the designer's own list instead of a sample
    (each must have a concept of the chosen methods at ``min_confidence``; ``size`` is ignored,
    the study's size is the list's length; docs/method.md §5).

    Everything is checked before anything is written, and written in one transaction: a study
    with an unknown annotator is refused, not left behind half made. Each item keeps the
    examples its raters are shown (:func:`core.study_reads.examples_shown`) and the study the
    run version it sampled, so both outlive later publishes (docs/architecture.md, human work).
    """
    _check_params(size, min_confidence, methods, name)
    with sessions.begin() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise StudyNotFound(f"unknown run {run_id!r}")
        people = _accounts_named(session, annotators or [])
        best = _best_concepts(session, run, METHODS[methods], min_confidence)
        if not best:
            raise StudyError(
                f"no latent of run {run_id!r} has a {' or '.join(METHODS[methods])} concept with "
                f"confidence >= {min_confidence}; lower the minimum or choose other methods"
            )
        rng = np.random.default_rng(seed)
        if latents:
            chosen = _listed(latents, best, run, METHODS[methods], min_confidence)
            size = len(chosen)
        # "both": latents with a concept of each method first, so the methods are rated on the
        # same latents; the others only fill up to the size (docs/method.md §5, the sample).
        wanted = len(METHODS[methods])
        full = sorted(i for i in best if len(best[i]) == wanted)
        rest = sorted(i for i in best if len(best[i]) < wanted)
        if not latents:
            chosen = [int(i) for i in rng.choice(full, size=min(size, len(full)), replace=False)]
            if len(chosen) < size and rest:
                more = rng.choice(rest, size=min(size - len(chosen), len(rest)), replace=False)
                chosen += [int(i) for i in more]
        pairs = [best[int(i)][m] for i in chosen for m in METHODS[methods] if m in best[int(i)]]
        order = rng.permutation(len(pairs))  # methods interleaved: nothing tells them apart
        study = Study(
            run_id=run_id, run_version=run.version, name=name.strip(), seed=seed, size=size,
            min_confidence=min_confidence, methods=methods, status="open", created_by=created_by,
        )  # fmt: skip
        session.add(study)
        session.flush()
        for position, k in enumerate(order):
            c = pairs[int(k)]
            session.add(
                StudyItem(
                    study_id=study.id,
                    position=position,
                    latent_idx=c.latent_idx,
                    concept_id=c.id,
                    method=c.method,
                    text=c.text,
                    confidence=c.confidence,
                    null_p95=details_null_p95(c.details),
                    null_p=details_null_p_any(c.details),
                    null_n=details_null_n(c.details),
                    verdict=verdict(c.confidence, c.details),
                    shown=examples_shown(session, run_id, c.latent_idx),
                )  # fmt: skip
            )
        for account in people:
            session.add(StudyAnnotator(study_id=study.id, account_id=account.id))
        return study.id


def _accounts_named(session: Session, usernames: list[str]) -> list[Account]:
    """The accounts of ``usernames`` (each once, in order); every unknown name is reported."""
    wanted = list(dict.fromkeys(usernames))
    found = {
        a.username: a for a in session.scalars(select(Account).where(Account.username.in_(wanted)))
    }
    missing = [u for u in wanted if u not in found]
    if missing:
        raise StudyError(
            f"no account {', '.join(map(repr, missing))}; an admin adds it at /admin/accounts "
            "(nothing was created)"
        )
    return [found[u] for u in wanted]


def assign(sessions: sessionmaker[Session], study_id: int, usernames: list[str]) -> list[str]:
    """Assign accounts (by username) to the study; returns the names newly assigned."""
    added: list[str] = []
    with sessions.begin() as session:
        if session.get(Study, study_id) is None:
            raise StudyNotFound(f"no study {study_id}")
        for account in _accounts_named(session, usernames):
            if session.get(StudyAnnotator, (study_id, account.id)) is None:
                session.add(StudyAnnotator(study_id=study_id, account_id=account.id))
                added.append(account.username)
    return added


def unassign(sessions: sessionmaker[Session], study_id: int, username: str) -> None:
    with sessions.begin() as session:
        account_id = session.scalar(select(Account.id).where(Account.username == username))
        session.execute(
            delete(StudyAnnotator).where(
                StudyAnnotator.study_id == study_id, StudyAnnotator.account_id == account_id
            )
        )


def set_status(sessions: sessionmaker[Session], study_id: int, status: str) -> None:
    """Open or close a study; closing freezes its ratings (reopening unfreezes them)."""
    if status not in ("open", "closed"):
        raise StudyError(f"a study is open or closed, not {status!r}")
    with sessions.begin() as session:
        study = session.get(Study, study_id, with_for_update=True)
        if study is None:
            raise StudyNotFound(f"no study {study_id}")
        study.status = status
        study.closed_at = datetime.now(UTC) if status == "closed" else None


def is_assigned(session: Session, study_id: int, account_id: int) -> bool:
    return session.get(StudyAnnotator, (study_id, account_id)) is not None
