"""probe: the trained model's representation of every case, and each user's vector (docs/method.md
§1.3)."""

from __future__ import annotations

import torch

from worker.artifacts import ProbeArrays
from worker.cases import DEV, SIDE_NAMES, TEST, TRAIN, build_cases
from worker.probe import probe as probe_reps
from worker.probe import user_vector_cases
from worker.recommenders.io import load_recommender
from worker.run import Run


def probe(run: Run) -> None:
    dataset = run.dataset
    model = load_recommender(run.dir)
    cases = build_cases(dataset, model.sequential, seed=run.config.seed)
    reps = probe_reps(model, dataset, cases)
    with torch.no_grad():
        item_emb = model.item_embeddings().float().numpy()
    user_vectors = probe_reps(model, dataset, user_vector_cases(dataset))
    result = ProbeArrays(cases, reps, item_emb, bool(model.sequential))
    result.save(run.dir, user_vectors)
    run.probe, run.user_vectors = result, user_vectors
    counts = {SIDE_NAMES[s]: int((cases.side == s).sum()) for s in (TRAIN, DEV, TEST)}
    run.log(f"  probed {len(cases)} cases ({counts}), d = {reps.shape[1]}")
