"""Parquet in an import (docs/import.md, the formats): the worker extra does not install a
Parquet engine (pyarrow's wheel is 55 MB, 170 MB installed: more than pandas itself), so an
export that names a ``.parquet`` file without one is refused before anything is written, naming
the file and saying to ``pip install pyarrow`` or export CSV / ``.npy``. The engine's absence is
made certain here (``sys.modules[...] = None`` makes an import fail), so the test means the same
wherever it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from worker.importer import ImportRefused, check_import, import_run


@pytest.fixture(autouse=True)
def no_parquet_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    for engine in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, engine, None)


def export(directory: Path, embeddings: str, interactions: str) -> Path:
    """A small import directory whose files are real up to the one under test (whose bytes a
    Parquet reader is never reached for: the missing engine is found first)."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    np.save(directory / "items.npy", rng.standard_normal((6, 4)).astype(np.float32))
    np.save(directory / "item_ids.npy", np.array([f"i{k}" for k in range(6)]))
    (directory / "interactions.csv").write_text(
        "user,item,timestamp\n" + "".join(f"u0,i{k},{k}\n" for k in range(4))
    )
    for name in ("items.parquet", "interactions.parquet"):
        (directory / name).write_bytes(b"PAR1 not read: the engine is missing PAR1")
    manifest = {
        "description": "a Parquet export",
        "items": {"embeddings": embeddings, "ids": "item_ids.npy"},
        "users": {"representations": "users.npy", "ids": "user_ids.csv"},
        "interactions": interactions,
        "ranking": "ranking.csv",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize(
    ("embeddings", "interactions", "named"),
    [
        ("items.parquet", "interactions.csv", "items.parquet"),  # an array (read_array)
        ("items.npy", "interactions.parquet", "interactions.parquet"),  # a table (read_table)
    ],
)
def test_a_parquet_export_without_pyarrow_is_refused_saying_what_to_install(
    tmp_path: Path, embeddings: str, interactions: str, named: str
) -> None:
    directory = export(tmp_path / "export", embeddings, interactions)
    with pytest.raises(ImportRefused) as refused:
        check_import(directory)
    message = str(refused.value)
    assert message.startswith(f"{named} in {directory}: ")
    assert "pip install pyarrow" in message and ".csv / .npy" in message


def test_the_refused_parquet_import_writes_nothing(tmp_path: Path) -> None:
    directory = export(tmp_path / "export", "items.parquet", "interactions.csv")
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'recsae.db'}")
    with pytest.raises(ImportRefused, match="pip install pyarrow"):
        import_run(directory, "parquet-run", settings=settings, log=lambda _: None)
    assert not data_dir.exists() or list(data_dir.rglob("*")) == []
