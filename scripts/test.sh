#!/usr/bin/env bash
# One command from a fresh clone to a passing test suite: set up (including Debian's chromium and
# postgresql), then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# Python caches each module it compiles (__pycache__/*.pyc) unless PYTHONDONTWRITEBYTECODE is
# set, as it is on this machine's image; uv installs no .pyc either. Then every process the
# tests start (servers, workers, pytest's own) compiled torch, pandas and scikit-learn from
# source again: 9.2 / 8.3 s of CPU to import the worker's modules instead of 6.4 / 6.1 s
# (docs/benchmarks.md).
unset PYTHONDONTWRITEBYTECODE

# The static checks run beside the tests, which wait on servers, browsers and subprocesses more
# than they compute: their output comes after pytest's, and either failing fails the command.
static_log=$(mktemp)
(
  set -e
  .venv/bin/ruff check core worker backend tests benchmarks migrations
  .venv/bin/lint-imports            # the floors: docs/architecture.md
  .venv/bin/mypy                    # core, worker, backend (pyproject.toml [tool.mypy])
) >"$static_log" 2>&1 &
static_pid=$!

# One pytest-xdist worker per core (-n 0 runs in this process): two per core oversubscribed
# this 2-core machine (pytest 957 s and 28 min of CPU against 586 s and 15 min at one per core,
# docs/benchmarks.md); a whole test file per worker so a module's trained fixture is built once, the
# files that train first (tests/conftest.py), in a random order (pytest-randomly prints "Using
# --randomly-seed=N": pass it to repeat an order). Later arguments override these.
set +e
.venv/bin/pytest -n "$(nproc)" --dist loadfile --no-loadscope-reorder --durations=25 "$@"
tests=$?
wait "$static_pid"
static=$?
set -e
echo "==> ruff, lint-imports, mypy (run beside the tests)"
cat "$static_log"
rm -f "$static_log"
if [ "$static" != 0 ]; then
  echo "==> the static checks failed (above)"
  [ "$tests" != 0 ] || tests=$static
fi
exit "$tests"
