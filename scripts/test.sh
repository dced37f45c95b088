#!/usr/bin/env bash
# The project's test command (README): the whole suite, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1
python3 -m pytest -q "$@"
