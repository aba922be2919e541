"""Issue 9 end to end: a planted run through the real pipeline leaves a permutation null beside
every TF-IDF confidence (docs/method.md §1.11), counts verified latents by the one definition in
every table, and takes TF-IDF terms from the descriptive fields only (docs/method.md §1.8)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from core.reports import PaperReport, details_null_p, details_null_p95, is_confident, is_verified
from core.rundir import REPORT
from core.settings import Settings
from core.store import reads
from core.store.engine import session_factory
from tests.worker.test_llm_client import Reply, ScriptedLLM, chat_reply
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.interpret.result import Interpretation
from worker.pipeline import Run, RunConfig, run_pipeline
from worker.stages.evaluate import evaluation_mask

pytestmark = pytest.mark.slow

SMALL = SyntheticConfig(
    n_users=500, n_items=150, n_tags=5, tags_per_item=1, tags_per_user=1, mean_history=25,
    coherence=0.95, seed=1,
)  # fmt: skip


def _llm(payload: dict[str, Any]) -> Reply:
    """Explains even latents as "the movie" (degenerate, twice), odd ones as "theme <id>";
    a level is a deterministic function of the explanation and the item."""
    users = [m["content"] for m in payload["messages"] if m["role"] == "user"]
    asks = [u for u in users if "Activations:" in u]  # few-shot examples first, then its own
    if asks:
        latent = int(asks[-1].split("Neuron ")[1].split("\n")[0])
        relabel = users[-1] != asks[-1]  # asked again after a degenerate label
        return chat_reply("the movie" if latent % 2 == 0 or relabel else f"theme {latent}")
    query = payload["messages"][3]["content"]
    digest = hashlib.sha256(query.encode()).digest()
    return chat_reply(str(digest[0] % 11))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, list[str]]]:
    root = tmp_path_factory.mktemp("null")
    raw, truth = generate(SMALL)
    config = RunConfig(
        recommender="bprmf", dataset_format="generic",
        dataset_path=str(write_generic_csv(raw, root / "csv")), dataset_name="nulltest",
        rating_threshold=None, sae_scale=1, sae_k=4, recommender_overrides={"epochs": 10},
        sae_overrides={"max_epochs": 200}, tuning=False, llm_latents=6, llm_null=2,
    )  # fmt: skip
    with ScriptedLLM(_llm) as llm:
        settings = Settings(data_dir=root / "var", llm_base_url=llm.base_url)
        yield run_pipeline(config, settings=settings, log=lambda _: None), list(truth.tags)


def test_every_tfidf_confidence_has_its_null_and_verified_uses_it(
    run: tuple[Run, list[str]],
) -> None:
    r, tags = run
    interp = Interpretation.load(r.dir)
    report = PaperReport.model_validate_json((r.dir / REPORT).read_text())
    assert report.null is not None
    for name in ("sae", "base"):
        concepts = interp.part(name).concepts
        scored = [c for c in concepts if c.confidence is not None]
        assert scored, name
        for c in scored:
            null = c.details["null"]
            assert null["n"] >= 1 and 0.0 <= null["p95"] <= 1.0 and null["mean"] <= 1.0
            # the rank p-value by hand from r and n (docs/method.md §1.11)
            assert null["p"] == pytest.approx((null["r"] + 1) / (null["n"] + 1))
            assert null["n"] == null["n_other_concepts"] + null["n_other_cases"]
            assert null["lift"] == pytest.approx(c.confidence - null["median"])
            assert "margin" in c.details
        summary = report.null["tfidf"][name]
        confident = sum(is_confident(c.confidence) for c in concepts)
        verified = sum(is_verified(c.confidence, details_null_p(c.details)) for c in concepts)
        assert (summary.confident, summary.verified) == (confident, verified)
        assert summary.verified <= summary.confident
        assert report.table4[name].latents_verified == verified
        assert report.table3[name].n_latents == verified
    # the items' titles ("Item 12") are no candidates: only descriptive fields are
    terms = {t for c in interp.sae.concepts for t, _ in c.terms}
    assert terms and "item" not in terms and terms <= set(tags)


def test_published_concepts_carry_the_null(run: tuple[Run, list[str]]) -> None:
    r, _ = run
    interp = Interpretation.load(r.dir)
    scored = next(c for c in interp.sae.concepts if c.confidence is not None)
    with session_factory(r.settings.resolved_database_url)() as session:
        rows = reads.latent_concepts(session, r.config.run_id, scored.latent)
        published = next(c for c in rows if c.method == "tfidf")
        assert published.confidence == pytest.approx(scored.confidence)
        assert details_null_p95(published.details) == pytest.approx(scored.details["null"]["p95"])
        assert details_null_p(published.details) == scored.details["null"]["p"]
        assert published.details["margin"] == pytest.approx(scored.details["margin"])


def test_llm_concepts_carry_a_bounded_null_and_degenerate_labels_stay_out_of_the_summary(
    run: tuple[Run, list[str]],
) -> None:
    r, _ = run
    concepts = r.llm_concepts
    assert len(concepts) == 6
    degenerate = [c for c in concepts if c.status == "degenerate"]
    scored = [c for c in concepts if c.confidence is not None]
    assert degenerate and all(c.latent_id % 2 == 0 for c in degenerate)
    for c in scored:
        null = c.details["null"]
        assert 1 <= len(null["concepts"]) <= 2  # llm_null = 2 other explanations
        assert all(e["text"].startswith("theme ") for e in null["concepts"])
    report = PaperReport.model_validate_json((r.dir / REPORT).read_text())
    assert report.null is not None
    summary = report.null["llm"]["sae"]
    assert summary.with_confidence == len(scored)
    assert summary.verified == sum(
        is_verified(c.confidence, details_null_p(c.details)) for c in concepts
    )
    with session_factory(r.settings.resolved_database_url)() as session:
        latent = reads.get_latent(session, r.config.run_id, degenerate[0].latent_id)
        assert latent is not None and latent.llm_concept is None
        rows = reads.latent_concepts(session, r.config.run_id, degenerate[0].latent_id)
        assert any(c.method == "llm" and c.status == "degenerate" for c in rows)


def test_construction_verification_and_evaluation_share_no_user(
    run: tuple[Run, list[str]],
) -> None:
    """docs/method.md §1.7: the users whose cases built any concept, verified any concept, and
    the users Figure 5 / Table 8 are measured on are three disjoint sets."""
    r, _ = run
    interp = Interpretation.load(r.dir)
    cases = r.probe.cases
    report = PaperReport.model_validate_json((r.dir / REPORT).read_text())
    assert report.case_sets is not None and report.case_sets["overlap_users"] == 0
    sizes = [report.case_sets[f"{s}_users"] for s in ("construction", "verification", "evaluation")]
    assert all(n > 0 for n in sizes)
    for name in ("sae", "base"):
        ex = interp.part(name).examples
        built = set(cases.user[ex.construction.case[ex.construction.case >= 0]].tolist())
        verified = set(cases.user[ex.verification.case[ex.verification.case >= 0]].tolist())
        negatives = set(cases.user[ex.random.case[ex.random.case >= 0]].tolist())
        assert built and verified and not (built & verified) and not (built & negatives)
        evaluation = set(cases.user[evaluation_mask(r)].tolist())
        assert len(evaluation) == report.case_sets["evaluation_users"]
        assert not (evaluation & built) and not (evaluation & verified | evaluation & negatives)
