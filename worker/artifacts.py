"""The arrays the probe and record stages leave, as typed records with their own save/load.

File names and the generic readers are :mod:`core.rundir`'s; these classes only say which
arrays a file holds and what shape each has.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import save_npz
from core.llm.concepts import LLMConcept
from core.rundir import (
    LLM_CONCEPTS,
    PROBE,
    RECORD,
    TUNING,
    VECTORS,
    ArtifactError,
    MissingArtifact,
    read_json,
    save_arrays,
    write_json,
)
from worker.cases import Cases


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise MissingArtifact(f"missing artifact {path}")
    with np.load(path) as arrays:
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ArtifactError(f"{path} lacks arrays {missing}; it has {sorted(arrays.files)}")
        return {n: arrays[n] for n in names}


@dataclass
class ProbeArrays:
    """``probe.npz``: every case, its representation, and the items it is scored against."""

    cases: Cases
    reps: np.ndarray  # [C, d] float32 the probed representations
    item_emb: np.ndarray  # [n_items, d] float32
    sequential: bool  # does the probed model's representation depend on the history?

    def save(self, run_dir: Path, user_vectors: np.ndarray) -> None:
        """``probe.npz``, and ``vectors.safetensors`` with ``user_vectors`` [U, d] (steering)."""
        save_npz(
            Path(run_dir) / PROBE,
            dict(user=self.cases.user, length=self.cases.length, side=self.cases.side,
                 reps=self.reps, item_emb=self.item_emb, sequential=np.array(self.sequential)),
        )  # fmt: skip
        save_arrays(
            Path(run_dir) / VECTORS,
            {
                "item_embeddings": np.ascontiguousarray(self.item_emb, dtype=np.float32),
                "user_vectors": np.ascontiguousarray(user_vectors, dtype=np.float32),
            },
        )

    @classmethod
    def load(cls, run_dir: Path) -> ProbeArrays:
        names = ("user", "length", "side", "reps", "item_emb", "sequential")
        a = _load_npz(Path(run_dir) / PROBE, names)
        cases = Cases(a["user"], a["length"], a["side"])
        return cls(cases, a["reps"], a["item_emb"], bool(a["sequential"]))


@dataclass
class RecordArrays:
    """``record.npz`` (docs/method.md §1.5): TopK codes and top-10 of every case and every user
    vector."""

    latent_idx: np.ndarray  # [C, k] int
    latent_val: np.ndarray  # [C, k] float32
    top_items: np.ndarray  # [C, 10] the model's top-10 (history masked)
    user_latent_idx: np.ndarray  # [U, k] the same for each user's test-position vector
    user_latent_val: np.ndarray  # [U, k]
    user_top_items: np.ndarray  # [U, 10]

    def save(self, run_dir: Path) -> None:
        save_npz(Path(run_dir) / RECORD, {f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, run_dir: Path) -> RecordArrays:
        names = tuple(f.name for f in fields(cls))
        return cls(**_load_npz(Path(run_dir) / RECORD, names))


def save_llm_concepts(run_dir: Path, concepts: list[LLMConcept]) -> None:
    write_json(Path(run_dir) / LLM_CONCEPTS, [c.to_json() for c in concepts])


def load_llm_concepts(run_dir: Path) -> list[LLMConcept]:
    """The LLM concepts of the run; none when the run asked for none (no file)."""
    path = Path(run_dir) / LLM_CONCEPTS
    if not path.exists():
        return []
    return [LLMConcept.from_json(c) for c in read_json(path)]


# latent -> {"scales", "related", "other", "related_share", "other_share", "n_cases"}
TuningPerLatent = dict[int, dict[str, Any]]


def save_tuning(run_dir: Path, per_latent: TuningPerLatent) -> None:
    write_json(Path(run_dir) / TUNING, {str(k): v for k, v in per_latent.items()})


def load_tuning(run_dir: Path) -> TuningPerLatent:
    """Per-latent Table 8 rows; empty when tuning did not run (no file)."""
    path = Path(run_dir) / TUNING
    if not path.exists():
        return {}
    return {int(k): v for k, v in read_json(path).items()}
