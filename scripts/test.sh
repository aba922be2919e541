#!/usr/bin/env bash
# One command from a fresh clone to a passing test suite: set up (including Debian's chromium and
# postgresql), then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check core worker backend tests benchmarks migrations
.venv/bin/lint-imports            # the floors: docs/architecture.md
.venv/bin/mypy                    # core, worker, backend (pyproject.toml [tool.mypy])
exec .venv/bin/pytest "$@"
