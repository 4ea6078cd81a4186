#!/usr/bin/env bash
# Everything this CPU-only machine cannot check, on a lent GPU, in at most 8 minutes, with no
# network: `bash scripts/gpu-check.sh OUT_DIR` writes OUT_DIR/gpu-check.md (scripts/gpu_check.py
# says what each part does). Uses the Python that has torch with CUDA there ($PYTHON, default
# python3) and this checkout on PYTHONPATH: nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: scripts/gpu-check.sh OUT_DIR}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
timeout 480 "$PYTHON" scripts/gpu_check.py "$OUT" "${@:2}"
