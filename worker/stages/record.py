"""record (docs/method.md §1.5): for every case and every user vector, the TopK codes and the
top-10."""

from __future__ import annotations

from worker.artifacts import RecordArrays
from worker.probe import top_items, user_vector_cases
from worker.run import Run
from worker.sae.train import encode_batched


def record(run: Run) -> None:
    dataset, probe, sae = run.dataset, run.probe, run.sae
    latent_idx, latent_val, _ = encode_batched(sae, probe.reps)
    top = top_items(probe.item_emb, probe.reps, dataset, probe.cases, n=10)
    user_vectors = run.user_vectors
    user_idx, user_val, _ = encode_batched(sae, user_vectors)
    user_top = top_items(probe.item_emb, user_vectors, dataset, user_vector_cases(dataset))
    result = RecordArrays(latent_idx, latent_val, top, user_idx, user_val, user_top)
    result.save(run.dir)
    run.record = result
