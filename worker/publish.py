"""Turn a finished run directory into database rows and publish them in one transaction."""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from core.jsonsafe import jsonable
from core.store.engine import session_factory
from core.store.migrate import upgrade
from core.store.writes import publish_run
from worker.cases import SIDE_NAMES
from worker.interpret.examples import ExampleSet

if TYPE_CHECKING:
    from worker.pipeline import Run

HISTORY_SHOWN = 20  # items of a case's history kept with an example (SASRec sees 20)
ROLES = ("construction", "verification", "random")


def build_rows(run: Run) -> dict[str, Any]:
    from worker.stages import (
        load_dataset,
        load_interpretation,
        load_llm_concepts,
        load_probe,
        load_sae,
        probed_sequential,
    )

    cfg = run.config
    dataset = load_dataset(run)
    cases, _, _ = load_probe(run)
    interp = load_interpretation(run)
    sae = load_sae(run)
    rec = np.load(run.dir / "record.npz")
    tuning_path = run.dir / "tuning.pkl"
    tuning: dict[int, dict] = {}
    if tuning_path.exists():
        with open(tuning_path, "rb") as f:
            tuning = pickle.load(f)  # our own file, written by the evaluate stage

    popularity = np.bincount(dataset.train_pairs()[:, 1], minlength=dataset.n_items)
    items = [
        dict(
            idx=i,
            external_id=dataset.item_ids[i],
            title=dataset.item_title[i],
            genres=dataset.item_genres[i],
            tags=dataset.item_tags[i],
            text=dataset.item_text[i],
            popularity=int(popularity[i]),
        )  # fmt: skip
        for i in range(dataset.n_items)
    ]
    sequential = probed_sequential(run)
    user_side = {int(u): SIDE_NAMES[int(s)] for u, s in zip(cases.user, cases.side, strict=True)}
    users = [
        dict(
            idx=u,
            external_id=dataset.user_ids[u],
            history=dataset.train_items(u).tolist(),
            dev_item=dataset.dev_item(u),
            test_item=dataset.test_item(u),
            side="test" if sequential else user_side[u],
        )  # fmt: skip
        for u in range(dataset.n_users)
    ]

    llm = {c.latent_id: c for c in load_llm_concepts(run)}
    part = interp["sae"]
    stats, examples, concepts = part["statistics"], part["examples"], part["concepts"]
    latents = []
    for lat in range(sae.n_latents):
        c = concepts[lat]
        verified = c.status == "verified" and c.confidence is not None
        latents.append(
            dict(
                idx=lat,
                density=float(stats.density[lat]),
                max_activation=float(stats.max_activation[lat]),
                mean_activation=float(stats.mean_activation[lat]),
                dead=bool(stats.dead[lat]),
                histogram=jsonable(stats.histograms[lat]),
                level_edges=jsonable(part["edges"][lat]),
                n_active_construction=int(examples.n_active_construction[lat]),
                n_active_verification=int(examples.n_active_verification[lat]),
                too_rare=bool(examples.too_rare[lat]),
                promoted=jsonable(interp["promoted"][lat]),
                suppressed=jsonable(interp["suppressed"][lat]),
                tfidf_confidence=float(c.confidence) if verified else None,
                tfidf_concept=c.text or None,
                tuning=jsonable(tuning.get(lat, {})),
                llm_confidence=llm[lat].confidence if lat in llm else None,
                llm_concept=(llm[lat].text or None) if lat in llm else None,
            )
        )

    example_rows = []
    for role in ROLES:
        ex: ExampleSet = getattr(examples, role)
        for lat, slot in zip(*np.nonzero(ex.case >= 0), strict=True):
            case = int(ex.case[lat, slot])
            u, n = int(cases.user[case]), int(cases.length[case])
            example_rows.append(
                dict(
                    latent_idx=int(lat),
                    role=role,
                    user_idx=u,
                    history=dataset.sequences[u][max(0, n - HISTORY_SHOWN) : n].tolist(),
                    predicted_item=int(ex.item[lat, slot]),
                    activation=float(ex.activation[lat, slot]),
                    level=int(ex.level[lat, slot]),
                )  # fmt: skip
            )

    concept_rows = [
        dict(
            latent_idx=c.latent,
            method="tfidf",
            text=c.text,
            terms=jsonable(c.terms),
            confidence=jsonable(c.confidence),
            status=c.status,
            model=None,
            details=jsonable(c.details),
        )  # fmt: skip
        for c in concepts
        if c.text
    ] + [jsonable(c.to_row()) for c in llm.values() if c.text]
    case_rows = [
        dict(
            user_idx=u,
            latent_idx=rec["user_latent_idx"][u].tolist(),
            latent_val=[float(v) for v in rec["user_latent_val"][u]],
            top_items=rec["user_top_items"][u].tolist(),
            top1_item=int(rec["user_top_items"][u, 0]),
        )  # fmt: skip
        for u in range(dataset.n_users)
    ]

    report = run.read_json("report.json")
    if (run.dir / "sweep.json").exists():
        report["sweep"] = run.read_json("sweep.json")
    metrics = {
        "dataset": dataset.stats,
        "recommender": run.read_json("recommender_report.json"),
        "sae": run.read_json("sae_report.json"),
        "report": report,
        "timings": run.timings(),
    }
    metrics["recommender"].pop("history", None)
    run_row = dict(
        id=cfg.run_id, dataset=cfg.dataset_name, recommender=cfg.recommender,
        artifact_dir=str(run.dir.resolve()), n_users=dataset.n_users, n_items=dataset.n_items,
        n_latents=sae.n_latents, k=sae.k, item_category=dataset.item_category,
        item_name=dataset.item_name, config=json.loads((run.dir / "config.json").read_text()),
        metrics=jsonable(metrics),
    )  # fmt: skip
    return dict(
        run=run_row, items=items, users=users, latents=latents, examples=example_rows,
        concepts=concept_rows, cases=case_rows,
    )  # fmt: skip


def publish(run: Run) -> None:
    url = run.settings.resolved_database_url
    if url.startswith("sqlite:///"):
        run.settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    rows = build_rows(run)
    publish_run(session_factory(url), **rows)
    run.log(
        f"  published run {rows['run']['id']}: {len(rows['latents'])} latents, "
        f"{len(rows['examples'])} examples, {len(rows['concepts'])} concepts"
    )


__all__ = ["publish", "build_rows"]
