"""publish: copy the run's files into a new read-only version directory, turn the working
directory into store rows and publish them in one transaction pointing at that version.

Each table's rows come from one function below (typed records of :mod:`core.records`); the run
row carries every number as :class:`core.reports.RunMetrics`, the version's number and the sha256
of its files (:mod:`core.versions`; docs/architecture.md, run versions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, records
from core.jsonsafe import jsonable
from core.llm.concepts import STATUS_VERIFIED
from core.reports import RunMetrics
from core.rundir import CONFIG, OUTPUT_CHECK
from core.store import reads
from core.store.engine import session_factory
from core.store.migrate import upgrade
from core.store.writes import NAMES_NOTHING, HistoryWouldBeLost, publish_run, summary_values
from core.versions import create_version, mark_published, next_number, stored_dir
from worker.cases import SIDE_NAMES
from worker.errors import ConfigError
from worker.interpret.examples import ROLES, ExampleSet, example_history
from worker.interpret.lenses import run_lenses
from worker.interpret.tfidf import descriptive_text
from worker.run import Run


def item_rows(run: Run) -> list[records.ItemRow]:
    dataset = run.dataset
    popularity = np.bincount(dataset.train_pairs()[:, 1], minlength=dataset.n_items)
    # One text for concept presence (docs/method.md §1.8): the verification text, built once
    # here; steering and segment steering tokenise it, as verification, Figure 5 and Table 8 do.
    text = descriptive_text(dataset, run.config.tfidf_title_words)
    return [
        records.ItemRow(
            idx=i,
            external_id=dataset.item_ids[i],
            title=dataset.item_title[i],
            genres=dataset.item_genres[i],
            tags=dataset.item_tags[i],
            text=text[i],
            popularity=int(popularity[i]),
        )  # fmt: skip
        for i in range(dataset.n_items)
    ]


def user_rows(run: Run) -> list[records.UserRow]:
    """Users, with the side their vector went to (every user is a test case when sequential)."""
    dataset, probe = run.dataset, run.probe
    user_side = {
        int(u): SIDE_NAMES[int(s)] for u, s in zip(probe.cases.user, probe.cases.side, strict=True)
    }
    return [
        records.UserRow(
            idx=u,
            external_id=dataset.user_ids[u],
            history=dataset.train_items(u).tolist(),
            dev_item=dataset.dev_item(u),
            test_item=dataset.test_item(u),
            side="test" if probe.sequential else user_side[u],
        )  # fmt: skip
        for u in range(dataset.n_users)
    ]


def output_checks(run: Run) -> dict[str, dict[int, dict[str, Any]]]:
    """The SAE's per-latent output checks by method (``output_check.json`` of evaluate,
    docs/method.md §1.9): {"tfidf": {latent: record}, "llm": {...}}."""
    sae = run.read_json(OUTPUT_CHECK)["sae"]
    return {m: {int(lat): rec for lat, rec in sae.get(m, {}).items()} for m in ("tfidf", "llm")}


def latent_rows(run: Run) -> list[records.LatentRow]:
    """Every SAE latent: statistics, examples' counts, decoder effects, best concepts."""
    interp, tuning = run.interpretation, run.tuning
    output = output_checks(run)
    # a degenerate LLM label names nothing (docs/method.md §1.8): kept as a concept row, not
    # as the latent's summary
    llm = {c.latent_id: c for c in run.llm_concepts if c.status not in NAMES_NOTHING}
    part = interp.sae
    stats, examples = part.statistics, part.examples
    lenses = run_lenses(run)  # confounds and the latent map (docs/method.md §6)
    out = []
    for lat in range(run.sae.n_latents):
        c = part.concepts[lat]
        verified = c.status == STATUS_VERIFIED
        tfidf_confidence = float(c.confidence) if verified and c.confidence is not None else None
        shown = lat in llm
        summary = summary_values(
            "tfidf", tfidf_confidence, c.text or None, c.details, output["tfidf"].get(lat)
        ) | (
            summary_values(
                "llm",
                llm[lat].confidence,
                llm[lat].text or None,
                llm[lat].details,
                output["llm"].get(lat),
            )  # fmt: skip
            if shown
            else summary_values("llm", None, None, None)
        )  # the verdicts and nulls (docs/method.md §1.11), the output checks (§1.9)
        out.append(
            records.LatentRow(
                idx=lat,
                density=float(stats.density[lat]),
                max_activation=float(stats.max_activation[lat]),
                mean_activation=float(stats.mean_activation[lat]),
                dead=bool(stats.dead[lat]),
                histogram=jsonable(stats.histograms[lat]),
                level_edges=jsonable(part.edges[lat]),
                n_active_construction=int(examples.n_active_construction[lat]),
                n_active_verification=int(examples.n_active_verification[lat]),
                too_rare=bool(examples.too_rare[lat]),
                promoted=jsonable(interp.promoted[lat]),
                suppressed=jsonable(interp.suppressed[lat]),
                tuning=jsonable(tuning.get(lat, {})),
                **summary,
                **lenses.row(lat),
            )  # fmt: skip
        )
    return out


def example_rows(run: Run) -> list[records.ExampleRow]:
    """Every latent's construction / verification / random examples, with real histories."""
    dataset, cases = run.dataset, run.probe.cases
    examples = run.interpretation.sae.examples
    out = []
    for role in ROLES:
        ex: ExampleSet = getattr(examples, role)
        for lat, slot in zip(*np.nonzero(ex.case >= 0), strict=True):
            case = int(ex.case[lat, slot])
            out.append(
                records.ExampleRow(
                    latent_idx=int(lat),
                    role=role,
                    user_idx=int(cases.user[case]),
                    history=example_history(dataset, cases, case).tolist(),
                    predicted_item=int(ex.item[lat, slot]),
                    activation=float(ex.activation[lat, slot]),
                    level=int(ex.level[lat, slot]),
                )  # fmt: skip
            )
    return out


def concept_rows(run: Run) -> list[records.ConceptRow]:
    """The TF-IDF concepts of every latent with a term, then the LLM's, each with its output
    check (docs/method.md §1.9)."""
    output = output_checks(run)
    tfidf = [
        records.ConceptRow(
            latent_idx=c.latent,
            method="tfidf",
            text=c.text,
            terms=jsonable(c.terms),
            confidence=jsonable(c.confidence),
            status=c.status,
            model=None,
            details=jsonable(c.details),
            output=output["tfidf"].get(c.latent),
        )  # fmt: skip
        for c in run.interpretation.sae.concepts
        if c.text
    ]
    llm = [
        records.ConceptRow(
            **jsonable(c.to_row())
            | {"output": output["llm"].get(c.latent_id) if c.status not in NAMES_NOTHING else None}
        )
        for c in run.llm_concepts
        if c.text
    ]
    return tfidf + llm


def case_rows(run: Run) -> list[records.CaseRow]:
    """Each user's recorded test-position vector (what the explorer steers from)."""
    rec = run.record
    return [
        records.CaseRow(
            user_idx=u,
            latent_idx=rec.user_latent_idx[u].tolist(),
            latent_val=[float(v) for v in rec.user_latent_val[u]],
            top_items=rec.user_top_items[u].tolist(),
            top1_item=int(rec.user_top_items[u, 0]),
        )  # fmt: skip
        for u in range(run.dataset.n_users)
    ]


def run_metrics(run: Run) -> RunMetrics:
    """Every number of the run, from the typed reports the stages wrote."""
    report = run.paper_report()
    report.sweep = run.sweep_rows()
    recommender = run.recommender_report()
    recommender.history = []  # per-epoch dev metrics stay in the run directory
    timings: dict[str, float | None] = dict(run.timings())
    return RunMetrics(
        dataset=run.dataset.stats,
        recommender=recommender,
        sae=run.sae_report(),
        report=report,
        timings=timings,
    )


def run_row(run: Run) -> records.RunRow:
    cfg, dataset, sae = run.config, run.dataset, run.sae
    return records.RunRow(
        id=cfg.run_id, dataset=cfg.dataset_name, recommender=cfg.recommender,
        artifact_dir=stored_dir(run.dir, run.settings.data_dir),
        n_users=dataset.n_users, n_items=dataset.n_items,
        n_latents=sae.n_latents, k=sae.k, item_category=dataset.item_category,
        item_name=dataset.item_name, config=run.read_json(CONFIG),
        metrics=jsonable(run_metrics(run).to_json()),
    )  # fmt: skip


def build_rows(run: Run) -> dict[str, Any]:
    """The keyword arguments of ``publish_run``: the run row and every table's rows."""
    return dict(
        run=records.rows([run_row(run)])[0],
        items=records.rows(item_rows(run)),
        users=records.rows(user_rows(run)),
        latents=records.rows(latent_rows(run)),
        examples=records.rows(example_rows(run)),
        concepts=records.rows(concept_rows(run)),
        cases=records.rows(case_rows(run)),
    )


def _discard_file(run: Run, version: int) -> Path:
    return run.dir / f"discarded-concepts-before-v{version}.json"


def _write_discarded(path: Path) -> Callable[[list[dict[str, Any]]], None]:
    def write(rows: list[dict[str, Any]]) -> None:
        atomic.write_text(path, json.dumps(rows, indent=2, default=str))

    return write


def _refusal(
    err: HistoryWouldBeLost, run: Run, previous: int | None, number: int, unpublished: bool
) -> str:
    left = f"version {number} stays unpublished and " if unpublished else ""
    return (
        f"{err}; {left}the explorer keeps version {previous}. To publish anyway: recsae versions "
        f"publish {run.config.run_id} --discard-history (it first writes those concepts to "
        f"{_discard_file(run, number)})"
    )


def publish(run: Run) -> None:
    """A new version directory, then the transaction that makes it the run's current version.

    If the transaction fails (or the process dies first) the directory stays, unreferenced:
    ``recsae versions list`` shows it as unpublished and the explorer keeps the old version.
    """
    url = run.settings.resolved_database_url
    if url.startswith("sqlite:///"):
        run.settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    sessions = session_factory(url)
    rows = build_rows(run)
    run_id = rows["run"]["id"]
    with sessions() as session:
        current = reads.get_run(session, run_id)
        previous = None if current is None else current.version
        lost = reads.kept_concepts_beyond(session, run_id, len(rows["latents"]))
        if lost and not run.discard_history:  # refused before any copying (checked again below)
            number = next_number(run.dir, previous)
            refused = HistoryWouldBeLost(
                run_id, number, [{"latent_idx": c.latent_idx} for c in lost]
            )
            raise ConfigError(_refusal(refused, run, previous, number, unpublished=False))
    if previous is not None:
        mark_published(run.dir, previous)
    version = create_version(run_id, run.dir, next_number(run.dir, previous))
    rows["run"] |= {
        "artifact_dir": stored_dir(version.dir, run.settings.data_dir),  # relative: relocatable
        "version": version.number,
        "digests": version.digests,
    }
    discarded = _discard_file(run, version.number)
    discard = _write_discarded(discarded) if run.discard_history else None
    try:
        publish_run(sessions, **rows, discard_history=discard)
    except HistoryWouldBeLost as err:
        raise ConfigError(_refusal(err, run, previous, version.number, unpublished=True)) from err
    mark_published(run.dir, version.number)
    if run.discard_history and discarded.exists():
        run.log(f"  concepts whose latents are gone were written to {discarded}")
    run.log(
        f"  published run {run_id} version {version.number} ({version.dir}): "
        f"{len(rows['latents'])} latents, {len(rows['examples'])} examples, "
        f"{len(rows['concepts'])} concepts"
    )
