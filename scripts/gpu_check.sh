#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): tests/gpu/, then a timed `lab train --device cuda` on a
# random-init ~0.5B Qwen2-architecture model; results with provenance in OUT_DIR.
#
#   scripts/gpu_check.sh [--dry-run] [OUT_DIR]     (default OUT_DIR: data/results/gpu_check)
#
# Runs from a plain checkout: nothing is installed, the lab is imported from this checkout
# (PYTHONPATH), the commit comes from LAB_COMMIT when there is no .git. PYTHON picks the
# interpreter (default: python, else python3); it must already have CUDA torch and transformers.
# --dry-run: the same steps with a tiny model on CPU (< 1 min; tests/test_gpu_check.py runs it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" "$ROOT/scripts/gpu_check.py" "$@"
