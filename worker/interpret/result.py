"""What the interpret stage leaves: per set of codes (the SAE's latents, the Base dimensions),
levels, examples, TF-IDF concepts and statistics; plus the decoder's item effects.

On disk (``core.rundir``): the arrays in ``interpretation.safetensors`` under ``<part>.<field>``
keys, everything else (concepts, histograms, sizes) in ``interpretation.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.rundir import (
    INTERPRETATION_ARRAYS,
    INTERPRETATION_JSON,
    map_arrays,
    read_json,
    save_arrays,
    write_json,
)
from worker.interpret.examples import LatentExamples
from worker.interpret.statistics import LatentStatistics
from worker.interpret.tfidf import TfidfConcept

PARTS = ("sae", "base")  # the representations interpreted, in the order they are written
ItemEffects = list[list[list[Any]]]  # per latent: [[item, score], ...] strongest first


@dataclass
class CodesInterpretation:
    """docs/method.md §1.6–1.8 on one set of codes (C recorded cases, k codes each)."""

    n_latents: int
    edges: np.ndarray  # [n_latents, 9] per-latent level edges (NaN rows: never active)
    levels: np.ndarray  # [C, k] int64 level 0..10 of each code
    pooled_levels: np.ndarray  # [C, k] int64 levels from edges pooled over all latents
    examples: LatentExamples
    concepts: list[TfidfConcept]  # one per latent, index = latent id
    statistics: LatentStatistics
    # [C, k] (idx, val) of the codes themselves when no other file holds them (the Base's)
    codes: tuple[np.ndarray, np.ndarray] | None = None

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {
            f"{prefix}.edges": self.edges,
            f"{prefix}.levels": self.levels,
            f"{prefix}.pooled_levels": self.pooled_levels,
            **self.examples.to_arrays(f"{prefix}.examples"),
            **self.statistics.to_arrays(f"{prefix}.statistics"),
        }
        if self.codes is not None:
            arrays[f"{prefix}.codes.idx"], arrays[f"{prefix}.codes.val"] = self.codes
        return arrays

    def to_json(self) -> dict[str, Any]:
        return {
            "n_latents": self.n_latents,
            "examples": self.examples.meta(),
            "concepts": [c.to_json() for c in self.concepts],
            "histograms": self.statistics.histograms,
        }

    @classmethod
    def load(
        cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str
    ) -> CodesInterpretation:
        """The inverse of :meth:`to_arrays` and :meth:`to_json`."""
        codes = None
        if f"{prefix}.codes.idx" in arrays:
            codes = (arrays[f"{prefix}.codes.idx"], arrays[f"{prefix}.codes.val"])
        return cls(
            n_latents=int(meta["n_latents"]),
            edges=arrays[f"{prefix}.edges"],
            levels=arrays[f"{prefix}.levels"],
            pooled_levels=arrays[f"{prefix}.pooled_levels"],
            examples=LatentExamples.from_arrays(arrays, f"{prefix}.examples", meta["examples"]),
            concepts=[TfidfConcept.from_json(c) for c in meta["concepts"]],
            statistics=LatentStatistics.from_arrays(
                arrays, f"{prefix}.statistics", meta["histograms"]
            ),
            codes=codes,
        )


def _effects_to_arrays(effects: ItemEffects, prefix: str) -> dict[str, np.ndarray]:
    """[[item, score], ...] per latent -> ``<prefix>.item`` int64 / ``.score`` float64 [L, top]."""
    items = np.array([[int(i) for i, _ in row] for row in effects], dtype=np.int64)
    scores = np.array([[float(s) for _, s in row] for row in effects], dtype=np.float64)
    top = len(effects[0]) if effects else 0
    return {
        f"{prefix}.item": items.reshape(len(effects), top),
        f"{prefix}.score": scores.reshape(len(effects), top),
    }


def _effects_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> ItemEffects:
    items, scores = arrays[f"{prefix}.item"], arrays[f"{prefix}.score"]
    return [
        [[int(i), float(s)] for i, s in zip(row_i, row_s, strict=True)]
        for row_i, row_s in zip(items, scores, strict=True)
    ]


@dataclass
class Interpretation:
    """Both representations' interpretation and the SAE decoder's item effects."""

    sae: CodesInterpretation
    base: CodesInterpretation
    promoted: ItemEffects  # per SAE latent, the items its decoder direction raises most
    suppressed: ItemEffects  # ... and lowers most

    def part(self, name: str) -> CodesInterpretation:
        """``"sae"`` or ``"base"``."""
        if name not in PARTS:
            raise KeyError(f"no interpretation part {name!r}; the parts are {PARTS}")
        part: CodesInterpretation = getattr(self, name)
        return part

    def save(self, run_dir: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name in PARTS:
            arrays |= self.part(name).to_arrays(name)
        arrays |= _effects_to_arrays(self.promoted, "promoted")
        arrays |= _effects_to_arrays(self.suppressed, "suppressed")
        save_arrays(Path(run_dir) / INTERPRETATION_ARRAYS, arrays)
        write_json(
            Path(run_dir) / INTERPRETATION_JSON, {name: self.part(name).to_json() for name in PARTS}
        )

    @classmethod
    def load(cls, run_dir: Path) -> Interpretation:
        arrays = map_arrays(Path(run_dir) / INTERPRETATION_ARRAYS)  # read when used
        meta = read_json(Path(run_dir) / INTERPRETATION_JSON)
        return cls(
            sae=CodesInterpretation.load(arrays, meta["sae"], "sae"),
            base=CodesInterpretation.load(arrays, meta["base"], "base"),
            promoted=_effects_from_arrays(arrays, "promoted"),
            suppressed=_effects_from_arrays(arrays, "suppressed"),
        )
