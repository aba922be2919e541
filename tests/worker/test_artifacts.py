"""The run directory's files round-trip exactly (safetensors + JSON, no pickles), and a stage whose
files are gone is not done."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.llm.concepts import LLMConcept
from core.rundir import (
    INTERPRETATION_ARRAYS,
    INTERPRETATION_JSON,
    ArtifactError,
    MissingArtifact,
    done_marker,
    load_arrays,
)
from core.settings import Settings
from worker.artifacts import (
    ProbeArrays,
    RecordArrays,
    load_llm_concepts,
    load_tuning,
    save_llm_concepts,
    save_tuning,
)
from worker.cases import DEV, TEST, TRAIN, Cases
from worker.interpret.result import CodesInterpretation, Interpretation
from worker.interpret.statistics import decoder_item_effects
from worker.run import Run, RunConfig
from worker.stages.interpret import interpret_codes


def _codes(rng: np.random.Generator, C: int, k: int, n_latents: int) -> tuple[np.ndarray, ...]:
    idx = np.stack([rng.choice(n_latents, size=k, replace=False) for _ in range(C)])
    val = rng.random((C, k)).astype(np.float32) * (rng.random((C, k)) > 0.2)
    return idx.astype(np.int64), val


def _interpretation() -> Interpretation:
    """A real one: the interpret stage's own function on random codes over 30 items."""
    rng = np.random.default_rng(0)
    C, k, n_latents, n_items = 120, 3, 12, 30
    cases = Cases(
        np.arange(C, dtype=np.int64) % 40, np.full(C, 5, np.int64),
        rng.choice([TRAIN, DEV, TEST], size=C, p=[0.5, 0.2, 0.3]).astype(np.int8),
    )  # fmt: skip
    top = rng.integers(0, n_items, size=(C, 10))
    words = ["drama", "comedy", "space", "war", "love", "crime"]
    dataset: Any = SimpleNamespace(
        item_text=[f"{words[i % 6]} {words[i // 6 % 6]}" for i in range(n_items)],
        item_title=[""] * n_items,  # TF-IDF reads the descriptive fields (docs/method.md §1.8)
        item_genres=[[] for _ in range(n_items)],
        item_tags=[[] for _ in range(n_items)],
    )
    idx, val = _codes(rng, C, k, n_latents)
    sae = interpret_codes(dataset, cases, idx, val, top, n_latents, 3, 0)
    base_idx, base_val = _codes(rng, C, k, 8)
    base = interpret_codes(dataset, cases, base_idx, base_val, top, 8, 3, 0)
    base.codes = (base_idx, base_val)
    promoted, suppressed = decoder_item_effects(
        rng.normal(size=(n_latents, 4)).astype(np.float32),
        rng.normal(size=(n_items, 4)).astype(np.float32),
    )
    return Interpretation(sae, base, promoted, suppressed)


def _assert_same(a: Any, b: Any, path: str = "") -> None:
    """Deep equality with numpy arrays compared by dtype and value (NaN == NaN)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b), path
        for f in fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    else:
        assert a == b and type(a) is type(b), (path, a, b)


def test_interpretation_round_trips_exactly(tmp_path: Path) -> None:
    original = _interpretation()
    assert any(c.status == "verified" for c in original.sae.concepts)  # the test covers them
    original.save(tmp_path)
    assert (tmp_path / INTERPRETATION_ARRAYS).is_file() and (
        tmp_path / INTERPRETATION_JSON
    ).is_file()
    back = Interpretation.load(tmp_path)
    _assert_same(original, back)
    assert isinstance(back.sae, CodesInterpretation) and back.sae.codes is None


def test_interpretation_missing_or_incomplete_is_named(tmp_path: Path) -> None:
    with pytest.raises(MissingArtifact, match=INTERPRETATION_ARRAYS):
        Interpretation.load(tmp_path)
    _interpretation().save(tmp_path)
    with pytest.raises(ArtifactError, match="lacks arrays"):
        load_arrays(tmp_path / INTERPRETATION_ARRAYS, ("no.such.array",))


def test_probe_record_llm_concepts_and_tuning_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cases = Cases(np.arange(6, dtype=np.int64), np.arange(6, dtype=np.int64) + 1,
                  np.array([0, 0, 1, 2, 2, 0], np.int8))  # fmt: skip
    probe = ProbeArrays(cases, rng.normal(size=(6, 4)).astype(np.float32),
                        rng.normal(size=(9, 4)).astype(np.float32), sequential=True)  # fmt: skip
    probe.save(tmp_path, user_vectors=rng.normal(size=(3, 4)).astype(np.float32))
    _assert_same(probe, ProbeArrays.load(tmp_path))

    record = RecordArrays(
        rng.integers(0, 8, (6, 2)), rng.random((6, 2)).astype(np.float32),
        rng.integers(0, 9, (6, 10)), rng.integers(0, 8, (3, 2)),
        rng.random((3, 2)).astype(np.float32), rng.integers(0, 9, (3, 10)),
    )  # fmt: skip
    record.save(tmp_path)
    _assert_same(record, RecordArrays.load(tmp_path))

    assert load_llm_concepts(tmp_path) == [] and load_tuning(tmp_path) == {}  # not asked for
    concepts = [
        LLMConcept(3, "space operas", 0.9, "verified", "local", {"cases": [{"answers": ["7"]}]}),
        LLMConcept(5, "", None, "unparseable", "local", {"reason": "no answer"}),
    ]
    save_llm_concepts(tmp_path, concepts)
    assert load_llm_concepts(tmp_path) == concepts
    tuning = {2: {"scales": [0.0, 1.0], "related": [0.1, 0.5], "other": [None, None], "n_cases": 4}}
    save_tuning(tmp_path, tuning)
    assert load_tuning(tmp_path) == tuning


def test_a_done_stage_without_its_files_is_rerun(tmp_path: Path) -> None:
    """An older run directory (e.g. one with interpretation.pkl) recomputes from interpret on."""
    run = Run(RunConfig(recommender="bprmf"), Settings(data_dir=tmp_path), log=lambda _: None)
    run.mark_done("interpret", 1.0)
    assert (run.dir / done_marker("interpret")).is_file()
    assert run.done("interpret") and not run.outputs_present("interpret")
    _interpretation().save(run.dir)
    assert run.outputs_present("interpret")
