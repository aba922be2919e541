#!/usr/bin/env bash
# One command from a fresh clone to the explorer: set up, run the pipeline on the shipped demo
# data (MovieLens latest-small) for BPRMF and SASRec, and serve http://127.0.0.1:8000.
# Runs already computed are reused; pass --force to recompute them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/recsae demo "$@"
