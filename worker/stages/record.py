"""record (docs/method.md §1.5): for every case and every user vector, the TopK codes and the
top-10.

Memory grows with the cases times k, never with cases times latents or the reconstructions: the
codes are encoded a batch at a time into preallocated [C, k] arrays (bounded memory).
"""

from __future__ import annotations

import numpy as np
import torch

from worker.artifacts import RecordArrays
from worker.probe import top_items, user_vector_cases
from worker.run import Run
from worker.sae.model import TopKSAE

ENCODE_BATCH = 16384  # vectors encoded at a time (worker.sae.train.encode_batched's batch)


@torch.inference_mode()  # as encode_batched: the encoder's no-grad path, the same codes
def encode_codes(
    sae: TopKSAE, x_ND: np.ndarray, batch_size: int = ENCODE_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(idx [N, k] int64, val [N, k] float32): the codes ``encode_batched`` gives, batch by batch
    into preallocated arrays and without its [N, d] reconstructions."""
    n = len(x_ND)
    if n == 0:
        raise ValueError("encode_codes got no vectors")
    idx = np.empty((n, sae.k), np.int64)
    val = np.empty((n, sae.k), np.float32)
    for start in range(0, n, batch_size):
        batch = torch.as_tensor(x_ND[start : start + batch_size], dtype=torch.float32)
        i_BK, v_BK = sae.encode(batch)
        idx[start : start + len(batch)] = i_BK.numpy()
        val[start : start + len(batch)] = v_BK.numpy()
    return idx, val


def record(run: Run) -> None:
    dataset, probe, sae = run.dataset, run.probe, run.sae
    latent_idx, latent_val = encode_codes(sae, probe.reps)
    top = top_items(probe.item_emb, probe.reps, dataset, probe.cases, n=10)
    user_vectors = run.user_vectors
    user_idx, user_val = encode_codes(sae, user_vectors)
    user_top = top_items(probe.item_emb, user_vectors, dataset, user_vector_cases(dataset))
    result = RecordArrays(latent_idx, latent_val, top, user_idx, user_val, user_top)
    result.save(run.dir)
    run.record = result
