"""A stage killed mid-way is never "done" (docs/architecture.md, stage markers).

For every stage of the pipeline, on a finished run: ``--stage <name> --force`` runs in another
process, which is paused right after the stage's first file is in place (its other files are
still the previous run's: a mixed state) and SIGKILLed there. The next run must recompute the
stage, not answer "done already", and leave the stage's files all from that recomputation.

The killed processes come from a fork server that imported the worker once, so each kill costs
a fork, not an interpreter start with torch.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from core import rundir
from core.settings import Settings
from core.store import reads
from core.store.engine import session_factory
from tests.worker.test_llm_client import Reply, ScriptedLLM, chat_reply
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.pipeline import STAGES, RunConfig, run_pipeline

RUN_ID = "killed-bprmf"
PAUSED, FINISHED = "paused", "finished"


def _llm(payload: dict[str, Any]) -> Reply:
    """Explains latent ``i`` as "theme i"; a verification level is a hash of the question."""
    query = payload["messages"][-1]["content"]  # its own query, after any few-shot example
    if "Activations:" in query:
        return chat_reply(f"theme {query.split('Neuron ')[1].split()[0]}")
    query = payload["messages"][3]["content"]
    return chat_reply(str(hashlib.sha256(query.encode()).digest()[0] % 11))


def _config(csv: Path) -> RunConfig:
    """A run small enough to take seconds, with every optional file on (tuning, LLM, sweep)."""
    return RunConfig(
        recommender="bprmf", dataset_format="generic", dataset_path=str(csv),
        dataset_name="killed", rating_threshold=None, sae_scale=1, sae_k=4, sae_fold_ins=0,
        n_examples=3, recommender_overrides={"epochs": 2, "threads": 1},
        sae_overrides={"max_epochs": 4}, llm_latents=2, llm_null=1, sweep=True,
    )  # fmt: skip


def _is_first_file(stage: str, rel: str) -> bool:
    """Whether a file renamed into place at ``rel`` (relative to the run directory) is one of
    ``stage``'s results; for publish, the new version directory (before the database commit)."""
    if stage == "publish":
        parts = Path(rel).parts
        return len(parts) == 2 and parts[0] == rundir.VERSIONS_DIR and parts[1].isdigit()
    return rel in rundir.stage_files(stage)


def _killed_stage(data_dir: str, config: dict[str, Any], llm_url: str, stage: str) -> None:
    """In the child: ``recsae run --stage <stage> --force``, paused (sleeping until killed)
    right after the first of the stage's files is renamed into place."""
    import torch

    torch.set_num_threads(1)
    run_dir = Path(data_dir) / "runs" / RUN_ID
    sentinel = Path(data_dir) / "child-state"
    renames = {"replace": os.replace, "rename": os.rename}

    def announce(state: dict[str, Any]) -> None:
        """Write the sentinel whole (the parent polls it: it must never read a half-written one)."""
        partial = sentinel.with_suffix(".partial")
        partial.write_text(json.dumps(state))
        renames["replace"](partial, sentinel)

    def pausing(kind: str) -> Any:
        def move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            renames[kind](src, dst, *args, **kwargs)
            target = Path(dst).absolute()
            if target.is_relative_to(run_dir) and _is_first_file(
                stage, target.relative_to(run_dir).as_posix()
            ):
                announce({"state": PAUSED, "file": str(target)})
                time.sleep(600)

        return move

    os.replace, os.rename = pausing("replace"), pausing("rename")
    settings = Settings(data_dir=Path(data_dir), llm_base_url=llm_url)
    run_pipeline(RunConfig(**config), settings, (stage,), force=True, log=lambda _: None)
    announce({"state": FINISHED})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunConfig, str]]:
    """(data directory of a finished, published run; its config; the LLM's URL)."""
    root = tmp_path_factory.mktemp("kill")
    raw, _ = generate(SyntheticConfig(n_users=200, n_items=80, n_tags=4, mean_history=15, seed=1))
    config = _config(write_generic_csv(raw, root / "csv"))
    with ScriptedLLM(_llm) as llm:
        settings = Settings(data_dir=root / "var", llm_base_url=llm.base_url)
        run = run_pipeline(config, settings, log=lambda _: None)
        assert all(run.unfinished(s) is None for s in STAGES[:-1])
        assert (run.dir / rundir.TUNING).is_file() and (run.dir / rundir.SWEEP).is_file()
        assert (run.dir / rundir.LLM_CONCEPTS).is_file()
        yield root / "var", config, llm.base_url


@pytest.fixture(scope="module")
def fork_server() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    # what the stages import lazily too (torch's optimisers pull in torch._dynamo: seconds)
    ctx.set_forkserver_preload(
        ["torch._dynamo", "sklearn.decomposition", "worker.pipeline", __name__]
    )
    return ctx


def _state(run_dir: Path, stage: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file of ``stage`` that is there."""
    out = {}
    for name in rundir.stage_files(stage):
        path = run_dir / name
        if path.is_file():
            st = path.stat()
            out[name] = (st.st_ino, st.st_mtime_ns)
    return out


def _current_version(settings: Settings) -> tuple[int, dict[str, str], str]:
    with session_factory(settings.resolved_database_url)() as session:
        row = reads.get_run(session, RUN_ID)
        assert row is not None and row.version is not None and row.digests is not None
        return row.version, dict(row.digests), row.artifact_dir


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_killed_mid_way_is_recomputed(
    stage: str,
    finished: tuple[Path, RunConfig, str],
    fork_server: multiprocessing.context.ForkServerContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template, config, llm_url = finished
    data_dir = tmp_path / "var"
    shutil.copytree(template, data_dir, symlinks=True)
    settings = Settings(data_dir=data_dir, llm_base_url=llm_url)
    run_dir = data_dir / "runs" / RUN_ID
    old = _state(run_dir, stage)
    old_version = _current_version(settings)[0]

    child = fork_server.Process(
        target=_killed_stage, args=(str(data_dir), asdict(config), llm_url, stage)
    )
    child.start()
    sentinel = data_dir / "child-state"
    try:
        deadline = time.monotonic() + 120
        while not sentinel.is_file() and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sentinel.is_file(), f"the {stage} child exited ({child.exitcode}) or hung"
        state = json.loads(sentinel.read_text())
        assert state["state"] == PAUSED, f"{stage} wrote none of its files by a rename"
        child.kill()  # SIGKILL
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
    finally:
        if child.is_alive():
            child.kill()
            child.join()

    # Killed mid-way: its marker and every later stage's were gone before it wrote anything.
    at_kill = _state(run_dir, stage)
    later = STAGES[STAGES.index(stage) :]
    assert [s for s in later if (run_dir / rundir.done_marker(s)).exists()] == []
    if stage != "publish":
        changed = [n for n in at_kill if at_kill[n] != old.get(n)]
        assert changed == [Path(state["file"]).relative_to(run_dir).as_posix()], changed

    renamed: set[str] = set()  # every file moved into place under the run directory
    replace = os.replace

    def recording(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        replace(src, dst, *args, **kwargs)
        if Path(dst).absolute().is_relative_to(run_dir):
            renamed.add(Path(dst).absolute().relative_to(run_dir).as_posix())

    monkeypatch.setattr(os, "replace", recording)
    logs: list[str] = []
    run = run_pipeline(config, settings, (stage,), log=logs.append)
    monkeypatch.undo()
    assert f"[{RUN_ID}] {stage}: done already (use --force to recompute)" not in logs, logs
    assert any(line.startswith(f"[{RUN_ID}] {stage} ...") for line in logs), logs

    # Consistent: every file of the stage is from the recomputation, the stages before it are
    # still done, the stage is done, the ones after it must run again.
    after = _state(run_dir, stage)
    assert set(after) == set(old), (sorted(after), sorted(old))
    assert [n for n in after if after[n] == at_kill[n]] == []
    assert sorted(set(after) - renamed) == []  # each written beside and renamed into place
    assert [s for s in STAGES[: STAGES.index(stage)] if run.unfinished(s) is not None] == []
    assert run.unfinished(stage) is None
    assert [s for s in later[1:] if run.done(s)] == []
    assert list(run_dir.rglob("*.partial")) == []
    if stage == "publish":  # the killed publish's directory stays unpublished; the new one is
        version, digests, artifact_dir = _current_version(settings)
        assert version == old_version + 2
        version_dir = run_dir / rundir.VERSIONS_DIR / str(version)
        assert (data_dir / artifact_dir).resolve() == version_dir.resolve()  # absolute or not
        assert digests == {n: rundir.file_digest(version_dir / n) for n in digests}


def test_a_file_changed_after_its_stage_finished_recomputes_the_stage(
    finished: tuple[Path, RunConfig, str], tmp_path: Path
) -> None:
    """The marker is there but interpretation.json is not what interpret wrote: not done."""
    template, config, llm_url = finished
    data_dir = tmp_path / "var"
    shutil.copytree(template, data_dir, symlinks=True)
    meta = data_dir / "runs" / RUN_ID / rundir.INTERPRETATION_JSON
    written = meta.read_bytes()
    meta.write_bytes(written + b"\n")  # still valid JSON, no longer the stage's bytes
    logs: list[str] = []
    settings = Settings(data_dir=data_dir, llm_base_url=llm_url)
    run_pipeline(config, settings, ("interpret", "evaluate"), log=logs.append)
    assert logs[0] == (
        f"[{RUN_ID}] interpret ... (recomputing: {rundir.INTERPRETATION_JSON} changed since the "
        "stage finished)"
    ), logs
    assert meta.read_bytes() == written  # recomputed: the same inputs and seed, the same bytes
    assert f"[{RUN_ID}] evaluate ..." in logs  # it read the old interpretation: stale too
