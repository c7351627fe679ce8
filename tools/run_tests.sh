#!/usr/bin/env bash
# Set up the environment (idempotent) and run the test suite.
#
#   bash tools/run_tests.sh              # full suite (what CI runs)
#   bash tools/run_tests.sh --quick      # fast subset for the edit-test loop
#   bash tools/run_tests.sh -k hcl       # extra args go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMREVIEWKD_VENV:-$ROOT/.venv}"
bash "$ROOT/tools/setup_env.sh"

ARGS=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then ARGS+=(-m "not slow"); else ARGS+=("$a"); fi
done
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" -m pytest tests "${ARGS[@]+"${ARGS[@]}"}"
