"""Immutable run versions (issue 8 §1): a publish writes a new read-only version directory and
switches the database to it in one transaction; nothing a later run does reaches a published
version; republishing keeps the concepts written from the web and by the LLM."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from backend.app import create_app
from backend.steering import clear_cache
from core import rundir
from core.settings import REPO_ROOT, Settings, get_settings
from core.store import migrate, reads
from core.store.engine import session_factory
from core.store.schema import Concept, Latent
from core.store.writes import HistoryWouldBeLost, add_concept, publish_run
from core.versions import artifact_path, create_version, list_versions, next_number
from tests.backend.factories import fixture_rows, llm_confidence
from worker.cli import app as cli_app
from worker.data.synthetic import SyntheticConfig, generate, write_generic_csv
from worker.pipeline import RunConfig, run_pipeline

pytestmark = pytest.mark.long  # trains, and kills a training subprocess

RUN_ID = "syn-bprmf"
ARGS = ["-r", "bprmf", "--format", "generic", "--name", "syn", "--scale", "1",
        "--set", "recommender.epochs=2", "--set", "recommender.threads=1",
        "--set", "sae.max_epochs=5"]  # fmt: skip
USERS = (0, 3, 10)  # whose pages and steering answers are compared
DB_NAME = "recsae.db"


@dataclass
class Workspace:
    settings: Settings
    csv: Path
    run_dir: Path  # the worker's working directory of the run

    def config(self, k: int) -> RunConfig:
        return RunConfig(
            recommender="bprmf", dataset_format="generic", dataset_path=str(self.csv),
            dataset_name="syn", sae_scale=1, sae_k=k,
            recommender_overrides={"epochs": 2, "threads": 1}, sae_overrides={"max_epochs": 5},
        )  # fmt: skip

    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.settings.resolved_database_url)

    def current(self) -> tuple[int, int, str, dict[str, str]]:
        """(version, k, artifact dir, digests) the database serves."""
        with self.sessions()() as session:
            run = reads.get_run(session, RUN_ID)
            assert run is not None
            where = str(artifact_path(run.artifact_dir, self.settings.data_dir))
            return run.version, run.k, where, dict(run.digests or {})


@pytest.fixture(scope="module")
def published_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    """A small BPRMF run on planted synthetic data, published once with k = 8 (version 1), and a
    copy of its data directory as it is then."""
    root = tmp_path_factory.mktemp("versions")
    # 600 users: record.npz is larger than a pipe's buffer (the kill test relies on it).
    raw, _ = generate(SyntheticConfig(n_users=600, n_items=100, n_tags=4, mean_history=20, seed=1))
    settings = Settings(
        data_dir=root / "var",
        database_url=f"sqlite:///{root / 'var' / DB_NAME}",
        allowed_hosts=["testserver"],
    )
    ws = Workspace(settings, write_generic_csv(raw, root / "csv"), settings.runs_dir / RUN_ID)
    run_pipeline(ws.config(8), settings=settings, log=lambda _: None)
    pristine = root / "pristine"
    pristine.mkdir()
    _copy_files(Path(settings.data_dir), pristine)
    with (
        closing(sqlite3.connect(Path(settings.data_dir) / DB_NAME)) as source,
        closing(sqlite3.connect(pristine / DB_NAME)) as target,
    ):
        source.backup(target)
    return ws, pristine


def _copy_files(source: Path, target: Path) -> None:
    """Everything in ``source`` but the database (its files: recsae.db, -wal, -shm)."""
    for path in source.iterdir():
        if path.name.startswith(DB_NAME):
            continue
        if path.is_dir():
            shutil.copytree(path, target / path.name, symlinks=True)
        else:
            shutil.copy2(path, target / path.name)


def _remove_tree(path: Path) -> None:
    # Published versions are read-only (docs/architecture.md, run versions); removing them as a
    # user that is not root needs write permission on their directories.
    for d in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(d.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(path)


@pytest.fixture
def workspace(published_once: tuple[Workspace, Path]) -> Workspace:
    """The run as first published (version 1, k = 8), whatever the tests before this one did to
    it: each test here starts from the same state, in any order."""
    ws, pristine = published_once
    clear_cache()
    data_dir = Path(ws.settings.data_dir)
    for path in data_dir.iterdir():
        if path.name.startswith(DB_NAME):
            continue
        if path.is_dir():
            _remove_tree(path)
        else:
            path.unlink()
    _copy_files(pristine, data_dir)
    # The database is written back in place (SQLite's backup API), not replaced: connections
    # that engines cached elsewhere (the app's, the CLI's) hold see the restored rows too.
    with (
        closing(sqlite3.connect(pristine / DB_NAME)) as source,
        closing(sqlite3.connect(data_dir / DB_NAME)) as target,
    ):
        source.backup(target)
    return ws


def answers(settings: Settings) -> list[bytes]:
    """What a freshly started explorer answers for a few users: page JSON and a steered list."""
    clear_cache()
    out = []
    with TestClient(create_app(settings)) as client:
        for user in USERS:
            page = client.get(f"/runs/{RUN_ID}/users/{user}.json")
            steer = client.post(
                f"/api/runs/{RUN_ID}/users/{user}/steer",
                json={"edits": [{"latent": 1, "value": 0.5}], "mode": "replace"},
            )
            assert page.status_code == 200 and steer.status_code == 200, page.text[:300]
            out += [page.content, steer.content]
    clear_cache()
    return out


def snapshot(vdir: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every file of a version: (sha256, inode, mtime_ns, mode)."""
    out = {}
    for path in sorted(vdir.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(vdir))] = (
                rundir.file_digest(path), st.st_ino, st.st_mtime_ns, stat.S_IMODE(st.st_mode)
            )  # fmt: skip
    return out


def _lines(stream: Any, out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)
    out.put("")


# ``python -c`` running the recsae command line with os.replace paused after record.npz's rename.
PAUSED_AFTER_RECORD = """
import os, sys, time
from worker.cli import app
replace = os.replace
def pausing(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    if os.fspath(dst).endswith("/record.npz"):
        print("paused inside record", flush=True)
        time.sleep(600)
os.replace = pausing
sys.argv[0] = "recsae"
app()
"""


def test_kill_during_record_serves_the_old_version_whole(workspace: Workspace) -> None:
    version, k, artifact_dir, digests = workspace.current()
    assert (version, k) == (1, 8) and Path(artifact_dir).name == "1"
    before = answers(workspace.settings)
    v1 = snapshot(Path(artifact_dir))

    # recsae run, paused right after record.npz is renamed into place (every file is written
    # atomically: docs/architecture.md, stage markers), so the process is inside record,
    # whatever the machine's speed, when it is killed.
    env = {**os.environ, **workspace.settings.as_environment(), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", PAUSED_AFTER_RECORD, "run", *ARGS, "--data", str(workspace.csv)]
    proc = subprocess.Popen(
        [*cmd, "--k", "4"], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("paused inside record") for line in seen):
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            assert line, f"recsae run ended before record: {''.join(seen)[-2000:]}"
            seen.append(line)
        assert proc.poll() is None, "".join(seen)[-2000:]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()

    # The worker had moved on in its working directory ...
    assert json.loads((workspace.run_dir / "sae" / "cfg.json").read_text())["k"] == 4
    assert (workspace.run_dir / rundir.done_marker("train_sae")).exists()
    assert not (workspace.run_dir / rundir.done_marker("record")).exists()
    # ... but the database, the version directory and the explorer are the old version, whole.
    assert workspace.current() == (1, 8, artifact_dir, digests)
    assert [v.number for v in list_versions(workspace.run_dir)] == [1]
    assert json.loads((Path(artifact_dir) / "sae" / "cfg.json").read_text())["k"] == 8
    assert snapshot(Path(artifact_dir)) == v1
    assert {name: d for name, (d, *_rest) in v1.items() if name in digests} == digests
    assert answers(workspace.settings) == before


def test_published_version_files_are_never_rewritten(workspace: Workspace) -> None:
    first = Path(workspace.current()[2])
    before = snapshot(first)
    assert before and all(mode & 0o222 == 0 for *_x, mode in before.values())  # read-only
    assert stat.S_IMODE(first.stat().st_mode) & 0o222 == 0

    # A new SAE (k = 4), then the same SAE published again: two new versions.
    run_pipeline(workspace.config(4), settings=workspace.settings, log=lambda _: None)
    changed = workspace.current()
    run_pipeline(workspace.config(4), settings=workspace.settings, stages=("publish",),
                 log=lambda _: None)  # fmt: skip
    again = workspace.current()

    assert changed[0] == first_number(first) + 1 and again[0] == changed[0] + 1
    assert changed[1] == 4 and Path(changed[2]).parent == first.parent
    assert snapshot(first) == before  # not one byte, inode, mtime or mode changed
    assert json.loads((first / "sae" / "cfg.json").read_text())["k"] == 8
    for number, _k, vdir, digests in (changed, again):
        manifest = json.loads((Path(vdir) / rundir.MANIFEST).read_text())
        assert manifest["version"] == number and manifest["files"] == digests
        assert set(rundir.EXPLORER_FILES) <= set(digests)
        assert all(rundir.file_digest(Path(vdir) / n) == d for n, d in digests.items())
    same_sae = {n: changed[3][n] for n in rundir.SAE_FILES}
    assert same_sae == {n: again[3][n] for n in rundir.SAE_FILES}


def first_number(vdir: Path) -> int:
    return int(vdir.name)


def test_versions_list_and_remove_refuses_current(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in workspace.settings.as_environment().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    runner = CliRunner()
    # Version 1 published, then the same working directory published again as version 2.
    run_pipeline(workspace.config(8), settings=workspace.settings, stages=("publish",),
                 log=lambda _: None)  # fmt: skip
    current = workspace.current()[0]
    assert current == 2
    # A publish that died after copying its files and before its transaction:
    dead = create_version(RUN_ID, workspace.run_dir, next_number(workspace.run_dir, current))

    try:
        listed = runner.invoke(cli_app, ["versions", "list", RUN_ID])
        assert listed.exit_code == 0, listed.output
        status = {int(line.split()[0]): line.split()[1] for line in listed.output.splitlines()
                  if line.strip()[:1].isdigit()}  # fmt: skip
        assert status[current] == "current" and status[dead.number] == "unpublished"
        assert status[1] == "published"
        assert f"current: v{current}" in listed.output

        refused = runner.invoke(cli_app, ["versions", "remove", RUN_ID, str(current)])
        assert refused.exit_code == 1
        assert f"version {current} is the current version" in refused.output
        assert (workspace.run_dir / "versions" / str(current)).is_dir()

        for number in (dead.number, 1):
            removed = runner.invoke(cli_app, ["versions", "remove", RUN_ID, str(number)])
            assert removed.exit_code == 0, removed.output
            assert not (workspace.run_dir / "versions" / str(number)).exists()
        listed = runner.invoke(cli_app, ["versions", "list"])
        numbers = [v.number for v in list_versions(workspace.run_dir)]
        assert 1 not in numbers and dead.number not in numbers and current in numbers
        assert f"run {RUN_ID} (current: v{current})" in listed.output
        answers(workspace.settings)  # the explorer still serves the current version

        # Publishing a working directory whose stages are not all done is refused up front.
        marker = workspace.run_dir / rundir.done_marker("interpret")
        saved = marker.read_text()
        marker.unlink()
        try:
            refused = runner.invoke(cli_app, ["versions", "publish", RUN_ID])
        finally:
            marker.write_text(saved)
        assert refused.exit_code == 1 and "not done: interpret" in refused.output
        assert workspace.current()[0] == current
        assert [v.number for v in list_versions(workspace.run_dir)] == numbers
    finally:
        get_settings.cache_clear()


# --- republishing keeps concepts (the store's publish transaction) ------------------------------

SAE_A = {name: "a" * 64 for name in rundir.SAE_FILES}
SAE_B = {name: "b" * 64 for name in rundir.SAE_FILES}
WEB_TEXT = "films with a twist ending"


def publish(
    sessions: sessionmaker[Session],
    digests: dict[str, str],
    discard: Callable[[list[dict[str, Any]]], None] | None = None,
    **kwargs: Any,
) -> int:
    """Publish the factory run with the given SAE digests (as if from a version directory)."""
    rows = fixture_rows(**kwargs)
    rows["run"] |= {"digests": {**digests, "vectors.safetensors": "c" * 64}}
    return publish_run(sessions, **rows, discard_history=discard)


def concepts(sessions: sessionmaker[Session], latent: int) -> list[Concept]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Concept)
                .where(Concept.run_id == "fixture", Concept.latent_idx == latent)
                .order_by(Concept.id)
            )
        )


@pytest.mark.parametrize("same_sae", [True, False], ids=["same-sae", "changed-sae"])
def test_republish_keeps_web_concepts(sessions: sessionmaker[Session], same_sae: bool) -> None:
    assert publish(sessions, SAE_A) == 1
    written = datetime(2026, 6, 1, tzinfo=UTC)
    web_id = add_concept(
        sessions,
        {"run_id": "fixture", "latent_idx": 2, "method": "llm", "text": WEB_TEXT,
         "confidence": 1.0, "status": "verified", "model": "web-model", "created_at": written},
    )  # fmt: skip
    llm_before = [(c.id, c.text) for c in concepts(sessions, 0) if c.method == "llm"]
    assert len(llm_before) == 1  # the pipeline's LLM concept of latent 0 (version 1)

    assert publish(sessions, SAE_A if same_sae else SAE_B) == 2

    (web,) = [c for c in concepts(sessions, 2) if c.source == "web"]
    assert (web.id, web.text, web.confidence, web.model) == (web_id, WEB_TEXT, 1.0, "web-model")
    assert web.created_at.replace(tzinfo=UTC) == written
    llm_after = [c for c in concepts(sessions, 0) if c.method == "llm"]
    assert llm_before[0] in [(c.id, c.text) for c in llm_after]  # the earlier LLM concept
    with sessions() as session:
        latent2 = session.get(Latent, ("fixture", 2))
        assert latent2 is not None
        if same_sae:  # the same latents: the web concept is current and leads the summary
            assert web.run_version == 2
            assert (latent2.llm_confidence, latent2.llm_concept) == (1.0, WEB_TEXT)
            assert len(llm_after) == 1 and llm_after[0].run_version == 2  # not carried twice
        else:  # another SAE: history of version 1, and the summary counts version 2 only
            assert web.run_version == 1
            assert latent2.llm_confidence == llm_confidence(2)
            assert sorted(c.run_version for c in llm_after) == [1, 2]

    # Published again as it was: the kept rows are still there (no loss on a second republish).
    assert publish(sessions, SAE_A if same_sae else SAE_B) == 3
    assert [c.id for c in concepts(sessions, 2) if c.source == "web"] == [web_id]


def test_republish_refuses_to_lose_concepts_of_gone_latents(
    sessions: sessionmaker[Session],
) -> None:
    publish(sessions, SAE_A)
    add_concept(
        sessions,
        {"run_id": "fixture", "latent_idx": 15, "method": "llm", "text": WEB_TEXT,
         "confidence": 0.5, "status": "verified"},
    )  # fmt: skip
    with pytest.raises(HistoryWouldBeLost) as err:
        publish(sessions, SAE_B, n_latents=10)  # a smaller SAE: latents 10..19 are gone
    message = str(err.value)
    lost = err.value.lost
    assert f"would lose {len(lost)} concept(s)" in message and "15" in message
    assert {c["text"] for c in lost} >= {WEB_TEXT}
    with sessions() as session:  # refused: nothing changed
        run = reads.get_run(session, "fixture")
        assert run is not None and (run.version, run.n_latents) == (1, 20)
    assert [c.text for c in concepts(sessions, 15) if c.source == "web"] == [WEB_TEXT]

    handed: list[dict[str, Any]] = []
    assert publish(sessions, SAE_B, n_latents=10, discard=handed.extend) == 2
    assert {c["id"] for c in handed} == {c["id"] for c in lost}
    assert concepts(sessions, 15) == []
    kept = [c for c in concepts(sessions, 2) if c.method == "llm"]
    assert [c.run_version for c in kept] == [1, 2]  # latent 2 still exists: its history stays


def test_history_of_an_earlier_version_is_marked_on_the_latent_page(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'recsae.db'}",
        allowed_hosts=["testserver"],
    )
    migrate.upgrade(settings.resolved_database_url)
    factory = session_factory(settings.resolved_database_url)
    publish(factory, SAE_A)
    add_concept(
        factory,
        {"run_id": "fixture", "latent_idx": 2, "method": "llm", "text": WEB_TEXT,
         "confidence": 1.0, "status": "verified"},
    )  # fmt: skip
    publish(factory, SAE_B)  # another SAE: the web concept is history of version 1
    with TestClient(create_app(settings)) as client:
        page = client.get("/runs/fixture/latents/2.json").json()
        html = client.get("/runs/fixture/latents/2", headers={"accept": "text/html"}).text
    (web,) = [h for h in page["history"] if h["text"] == WEB_TEXT]
    assert (web["source"], web["run_version"], web["from_version"]) == ("web", 1, 1)
    assert page["concepts"]["llm"]["latest"]["run_version"] == 2  # not the old version's
    assert page["concepts"]["llm"]["text"] != WEB_TEXT
    assert f'{WEB_TEXT} <span class="small muted">(from version 1)</span>' in html
