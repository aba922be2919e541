#!/usr/bin/env bash
# One command from a fresh clone to a passing test suite: set up (including Debian's chromium and
# postgresql), then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check core worker backend tests benchmarks migrations
.venv/bin/lint-imports            # the floors: docs/architecture.md
.venv/bin/mypy                    # core, worker, backend (pyproject.toml [tool.mypy])
# Every core (pytest-xdist; -n 0 runs in this process), a whole test file per worker so a
# module's trained fixture is built once, the files that train first (tests/conftest.py), in a
# random order (pytest-randomly prints "Using --randomly-seed=N": pass it to repeat an order).
# Later arguments override these.
exec .venv/bin/pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25 "$@"
