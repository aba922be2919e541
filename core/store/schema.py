"""SQLAlchemy models. Changing a table means a new Alembic revision in ``migrations/versions``.

A *run* is one (dataset, recommender, SAE) triple with everything interpreted from it. Every row
below a run carries ``run_id``; rows are written in one transaction by ``writes.publish_run`` so a
failed or killed pipeline never leaves a half-written run visible (the run row itself is only
ever committed together with its children, with status ``ready``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> datetime:
    return datetime.now(UTC)


# SQLite hands out max(id) + 1 without AUTOINCREMENT, so a deleted row's id could come back and a
# reference kept elsewhere (an export, a study item's concept id, a link) would name another row;
# PostgreSQL's sequences never go back (docs/architecture.md, human work).
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "ml-latest-small-sasrec"
    dataset: Mapped[str] = mapped_column(String(128))
    recommender: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # The published version's directory, relative to the data directory (runs/<id>/versions/<n>;
    # an older row may hold an absolute path): config.json, *.safetensors.
    # A published version's files are never written again (docs/architecture.md, run versions).
    artifact_dir: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # sha256 of every file in artifact_dir at publish, by relative path; loaders check them.
    digests: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    n_users: Mapped[int] = mapped_column(Integer)
    n_items: Mapped[int] = mapped_column(Integer)
    n_latents: Mapped[int] = mapped_column(Integer)
    k: Mapped[int] = mapped_column(Integer)
    item_category: Mapped[str] = mapped_column(String(64), default="items")
    item_name: Mapped[str] = mapped_column(String(64), default="item")
    # Every stage's config, as saved with the run (dataclasses -> dict).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The run's report: {"dataset": stats, "recommender": {...}, "sae": {...}, "concepts": {...},
    # "tables": {...}}; the numbers of docs/method.md §1.9 as they are computed.
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Item(Base):
    __tablename__ = "items"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text)
    genres: Mapped[list[Any]] = mapped_column(JSON, default=list)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    text: Mapped[str] = mapped_column(Text)
    popularity: Mapped[int] = mapped_column(Integer, default=0)  # training interactions


class User(Base):
    __tablename__ = "users"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))
    history: Mapped[list[Any]] = mapped_column(JSON)  # item idx, chronological, train part
    dev_item: Mapped[int] = mapped_column(Integer)
    test_item: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))  # train / dev / test side of the split


class Latent(Base):
    __tablename__ = "latents"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    density: Mapped[float] = mapped_column(Float)  # share of TRAIN cases where it is active
    max_activation: Mapped[float] = mapped_column(Float)
    mean_activation: Mapped[float] = mapped_column(Float)  # over cases where it is active
    dead: Mapped[bool] = mapped_column(default=False)  # never active on any recorded case
    # {"edges": [...], "counts": [...]} of non-zero activations (the latent page's histogram).
    histogram: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    level_edges: Mapped[list[Any]] = mapped_column(JSON, default=list)  # 9 inner edges, per latent
    n_active_construction: Mapped[int] = mapped_column(Integer, default=0)
    n_active_verification: Mapped[int] = mapped_column(Integer, default=0)
    too_rare: Mapped[bool] = mapped_column(default=False)  # < N active verification cases
    # Items the decoder direction promotes / suppresses most: [[item idx, W_dec col · e_i], ...].
    promoted: Mapped[list[Any]] = mapped_column(JSON, default=list)
    suppressed: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Denormalised for sorting/filtering: best confidence and text per method (None: none yet).
    tfidf_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    tfidf_concept: Mapped[str | None] = mapped_column(Text, nullable=True)
    llm_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    llm_concept: Mapped[str | None] = mapped_column(Text, nullable=True)
    # ... and that concept's verdict (core.reports.VERDICTS, docs/method.md §1.11; None: no
    # confidence) with its null's rank p-value and size: the list's badge and filter follow it.
    tfidf_verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    tfidf_null_p: Mapped[float | None] = mapped_column(Float, nullable=True)
    tfidf_null_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    llm_verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    llm_null_p: Mapped[float | None] = mapped_column(Float, nullable=True)
    llm_null_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # ... and that concept's output check (docs/method.md §1.9, "Output check"): confirmed /
    # refuted / too_few; None: not checked (a run published before it, a web explanation).
    tfidf_output: Mapped[str | None] = mapped_column(String(16), nullable=True)
    llm_output: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Targeted tuning (paper §8, docs/method.md §1.9 Table 8): {"scales": [...], "related": [...],
    # "other": [...], "n_cases": int}; empty when the latent has no verified concept.
    tuning: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Lenses (docs/method.md): confounds, Spearman correlation of the latent's activation
    # with the user's history length, and of its decoder effect with item popularity over the
    # items it promotes (None: not computed, e.g. a run published before the lenses existed).
    activity_corr: Mapped[float | None] = mapped_column(Float, nullable=True)
    popularity_corr: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The latent map: 2-D layout of the decoder directions (None: not computed).
    map_x: Mapped[float | None] = mapped_column(Float, nullable=True)
    map_y: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_latents_run_tfidf", "run_id", "tfidf_confidence"),)


class Example(Base):
    """A case shown for a latent: construction, verification, or random (not active)."""

    __tablename__ = "examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    latent_idx: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # construction / verification / random
    user_idx: Mapped[int] = mapped_column(Integer)
    history: Mapped[list[Any]] = mapped_column(JSON)  # item idx the model saw (last 20)
    predicted_item: Mapped[int] = mapped_column(Integer)  # the model's top-1
    activation: Mapped[float] = mapped_column(Float)
    level: Mapped[int] = mapped_column(Integer)  # 0-10 (docs/method.md §1.6)

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "latent_idx"], ["latents.run_id", "latents.idx"], ondelete="CASCADE"
        ),
        Index("ix_examples_latent", "run_id", "latent_idx"),
    )


class Concept(Base):
    """One explanation of a latent and its verification. Explanations keep their history."""

    __tablename__ = "concepts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    latent_idx: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))  # tfidf / llm
    text: Mapped[str] = mapped_column(Text)  # the concept (TF-IDF: top term)
    terms: Mapped[list[Any]] = mapped_column(JSON, default=list)  # TF-IDF: top 3 [[term, score]]
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: not verified
    status: Mapped[str] = mapped_column(String(24))  # verified / too_rare / unparseable
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)  # LLM model name
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # per-case predictions
    # The output check (docs/method.md §1.9): verdict, mode, n_users, shares before / boosted /
    # suppressed, both changes with their paired 95% CIs; None: not checked.
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # "pipeline" (written by a publish) or "web" (written from the explorer); web rows and earlier
    # LLM rows survive a republish (history), tagged with the run version they describe.
    source: Mapped[str] = mapped_column(String(16), default="pipeline", server_default="pipeline")
    run_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )

    __table_args__ = (
        ForeignKeyConstraint(
            ["run_id", "latent_idx"], ["latents.run_id", "latents.idx"], ondelete="CASCADE"
        ),
        Index("ix_concepts_latent", "run_id", "latent_idx"),
        # ids are never handed out twice: a study item keeps the id of the concept it sampled
        NEVER_REUSE_IDS,
    )


class RecordedCase(Base):
    """A recorded case (docs/method.md §1.5) on the verification side: its latents and the model's
    output.

    Only TEST-side cases are stored (one per test user for sequential models, the held-out users
    otherwise, plus every user's own test-position case for the user page); the rest stays in the
    run's artifacts.
    """

    __tablename__ = "cases"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    user_idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    latent_idx: Mapped[list[Any]] = mapped_column(JSON)  # k latent ids
    latent_val: Mapped[list[Any]] = mapped_column(JSON)  # k activations
    top_items: Mapped[list[Any]] = mapped_column(JSON)  # the model's top 10
    top1_item: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_cases_top1", "run_id", "top1_item"),)


class Account(Base):
    """A person who signs in to the explorer (not a recommender's user: those are ``users``)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)  # pwdlib (argon2)
    role: Mapped[str] = mapped_column(String(16))  # admin / annotator
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (NEVER_REUSE_IDS,)


class LoginSession(Base):
    """A signed-in browser. Only the token's sha256 is stored; the cookie holds the token."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_login_sessions_account", "account_id"),)


# --- human evaluation (docs/method.md §5) -------------------------------------------


class Study(Base):
    """A human evaluation of a run's concepts: a seeded sample of (latent, concept) pairs that the
    assigned annotators rate on the 1–4 relevance scale (docs/method.md §5)."""

    __tablename__ = "studies"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No cascade: a study outlives every republish of its run (publishing updates the run row in
    # place); deleting a run that has studies is refused (docs/architecture.md, human work).
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    # The run version the study sampled (None: made before versions were recorded).
    run_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    name: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)  # latents asked for (fewer when fewer qualify)
    min_confidence: Mapped[float] = mapped_column(Float)
    methods: Mapped[str] = mapped_column(String(16))  # tfidf / llm / both
    status: Mapped[str] = mapped_column(String(8), default="open")  # open / closed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )


class StudyAnnotator(Base):
    __tablename__ = "study_annotators"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )


class StudyItem(Base):
    """One (latent, concept) pair of a study, in the study's order. The concept's text, method
    and confidence are copied: a study keeps what its annotators saw whatever is republished."""

    __tablename__ = "study_items"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0-based
    latent_idx: Mapped[int] = mapped_column(Integer)
    concept_id: Mapped[int] = mapped_column(Integer)  # concepts.id when sampled
    method: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    null_p95: Mapped[float | None] = mapped_column(Float, nullable=True)
    # ... its null's rank p-value and size, and its verdict then (docs/method.md §1.11).
    null_p: Mapped[float | None] = mapped_column(Float, nullable=True)
    null_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The examples shown to raters, as they saw them ({"construction": [...], "verification":
    # [...]}, each {"level", "predicted", "history"} with titles): a later version's latent with
    # the same index is another latent. None: not yet copied (read live from the study's version).
    shown: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        UniqueConstraint("study_id", "latent_idx", "concept_id", name="uq_study_items_concept"),
    )


class Rating(Base):
    """An annotator's rating of one study item: ``value`` 1–4, or None with ``skip_reason``.
    One row per (study, annotator, latent, concept), enforced by the database."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    latent_idx: Mapped[int] = mapped_column(Integer)
    concept_id: Mapped[int] = mapped_column(Integer)
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    __table_args__ = (
        UniqueConstraint(
            "study_id", "account_id", "latent_idx", "concept_id", name="uq_ratings_one_per_key"
        ),
        ForeignKeyConstraint(
            ["study_id", "latent_idx", "concept_id"],
            ["study_items.study_id", "study_items.latent_idx", "study_items.concept_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("value IS NULL OR (value >= 1 AND value <= 4)", name="ck_ratings_scale"),
        NEVER_REUSE_IDS,
    )


class RatingChange(Base):
    """Every change to a rating (the first one too): who, when, old and new value (or skip)."""

    __tablename__ = "rating_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"))
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    old_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    old_skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    new_skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_rating_changes_rating", "rating_id"), NEVER_REUSE_IDS)


class Invite(Base):
    """A single-use invitation to create an account. Only the token's sha256 is stored;
    the link holds the token. ``used_at`` set: spent; ``expires_at`` past: refused."""

    __tablename__ = "invites"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # admin / annotator
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True
    )  # the account it created
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), nullable=True
    )  # assigned to this study on sign-up (optional); an invite outlives a deleted study
