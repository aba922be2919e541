"""The floors (docs/architecture.md), checked at run time as well as by ``lint-imports``.

import-linter reads import statements; this test imports the app in a fresh interpreter and
looks at what actually got loaded, so a lazy import inside a function body or a plugin loaded
by a library is caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys

from core.settings import REPO_ROOT

_LOADED = """
import json, sys
from backend.app import create_app
create_app()
print(json.dumps(sorted(sys.modules)))
"""


def _modules_loaded_by_the_app(tmp_path) -> set[str]:
    env = {"RECSAE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _LOADED], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_loads_neither_torch_nor_the_worker(tmp_path) -> None:
    loaded = _modules_loaded_by_the_app(tmp_path)
    assert "backend.app" in loaded  # the probe itself worked
    assert not {m for m in loaded if m == "torch" or m.startswith("torch.")}
    assert not {m for m in loaded if m == "worker" or m.startswith("worker.")}


def test_core_stands_alone() -> None:
    probe = (
        "import sys, core.settings, core.store.reads, core.store.writes, core.llm.concepts, "
        "core.text, core.reports, core.rundir; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('worker', 'backend', 'torch')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        timeout=120,
    )  # fmt: skip
    assert out.stdout.strip() == "[]"
