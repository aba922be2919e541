"""Two published runs on one dataset for the lenses (docs/method.md §6): run A is a synthetic run
(``tests.backend.synthetic_run``), run B the very same SAE with its latents permuted, so every
latent of A has an exact twin in B (co-activation 1, item-effect correlation 1) at a known index.
The factory run (another dataset, no artifacts) sits beside them and must never be compared."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from sqlalchemy.orm import Session, sessionmaker

from core import rundir
from tests.backend.factories import publish_fixture
from tests.backend.synthetic_run import SyntheticRun, make_run

RUN_A, RUN_B = "lens-a", "lens-b"
SIZES: dict[str, int] = dict(n_items=300, n_users=160, d=24, n_latents=96, k=6, n_tags=20, seed=3)


@dataclass
class LensRuns:
    a: SyntheticRun
    b: SyntheticRun
    perm: np.ndarray  # B's latent j is A's latent perm[j]

    def twin(self, latent: int) -> int:
        """B's index of A's latent ``latent``."""
        return int(np.flatnonzero(self.perm == latent)[0])


def permute_sae(artifact_dir: Path, perm: np.ndarray) -> None:
    """Rewrite a run's SAE with latent j := latent perm[j] (the same function, renumbered)."""
    path = artifact_dir / rundir.SAE_DIR / rundir.SAE_WEIGHTS
    sae = load_file(str(path))
    save_file(
        {
            "W_enc": np.ascontiguousarray(sae["W_enc"][:, perm]),
            "b_enc": np.ascontiguousarray(sae["b_enc"][perm]),
            "W_dec": np.ascontiguousarray(sae["W_dec"][perm]),
            "b_dec": sae["b_dec"],
        },
        str(path),
    )


def publish_lens_runs(data_dir: Path, sessions: sessionmaker[Session]) -> LensRuns:
    a = make_run(data_dir, sessions, RUN_A, **SIZES)
    b = make_run(data_dir, sessions, RUN_B, **SIZES)
    perm = np.random.default_rng(7).permutation(SIZES["n_latents"])
    permute_sae(b.artifact_dir, perm)
    publish_fixture(sessions)  # run "fixture", dataset "tiny-movies"
    return LensRuns(a, b, perm)
