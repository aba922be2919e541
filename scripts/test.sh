#!/usr/bin/env bash
# One command from a fresh clone to a passing test suite: set up (including Debian's chromium and
# postgresql), then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check worker backend tests benchmarks migrations
exec .venv/bin/pytest "$@"
