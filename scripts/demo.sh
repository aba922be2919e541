#!/usr/bin/env bash
# One command from a fresh clone to the explorer: set up, then serve http://127.0.0.1:8000 at
# once and run the pipeline on the shipped demo data (MovieLens latest-small) for BPRMF and SASRec
# behind it. The home page shows each run's progress; a run appears when its first version (TF-IDF
# concepts) is published, and its LLM labels follow as a new version. Ctrl-C stops everything.
# Runs already computed are reused; pass --force to recompute them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Cache compiled modules (scripts/test.sh says why): the demo starts a server, a job worker and
# two pipelines, each importing torch or scikit-learn.
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/recsae demo "$@"
