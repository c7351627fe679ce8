#!/usr/bin/env bash
# Set up the environment (idempotent) and run the CPU quickstart:
# teacher, baseline student and ReviewKD student on the digits dataset.
#
#   bash tools/quickstart.sh [--epochs 20] [--work-dir work_dirs/quickstart]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMREVIEWKD_VENV:-$ROOT/.venv}"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" tools/quickstart.py "$@"
