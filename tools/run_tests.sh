#!/usr/bin/env bash
# Set up the environment (idempotent) and run the test suite.
#
#   bash tools/run_tests.sh                  # full suite on the main stack (.venv)
#   bash tools/run_tests.sh --quick          # fast subset (-m "not slow")
#   bash tools/run_tests.sh -k hcl           # extra args go to pytest
#   bash tools/run_tests.sh --stack oldest   # QUICK suite on the oldest stack
#                                            # (.venv-oldest: torch 2.1.2, numpy<2,
#                                            # mmengine 0.10.0, mmpretrain 1.1.0, mmdet 3.2.0)
# CI (.ci/run) runs the first and the last of these. See tools/setup_env.sh for
# the stacks and MMREVIEWKD_VENV / MMREVIEWKD_VENV_OLDEST.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMREVIEWKD_STACK:-main}"

ARGS=()
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --stack) STACK="${2:?--stack needs a value (main|oldest)}"; shift ;;
        --stack=*) STACK="${1#--stack=}" ;;
        *) ARGS+=("$1") ;;
    esac
    shift
done
case "$STACK" in
    main) VENV="${MMREVIEWKD_VENV:-$ROOT/.venv}" ;;
    oldest) VENV="${MMREVIEWKD_VENV_OLDEST:-$ROOT/.venv-oldest}"; QUICK=1 ;;
    *) echo "unknown stack '$STACK' (main|oldest)" >&2; exit 2 ;;
esac
bash "$ROOT/tools/setup_env.sh" --stack "$STACK"

# the quick marker goes first, so an -m of the caller wins
if [ "$QUICK" = 1 ]; then ARGS=(-m "not slow" "${ARGS[@]+"${ARGS[@]}"}"); fi
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
echo "[run_tests] stack $STACK: $VENV/bin/python -m pytest tests ${ARGS[*]+"${ARGS[*]}"}"
exec "$VENV/bin/python" -m pytest tests "${ARGS[@]+"${ARGS[@]}"}"
