#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# Env: PYTHON (default: `python` on PATH, else `python3`; activate the venv
#      or set PYTHON=/path/to/venv/bin/python), NNODES (1), NODE_RANK (0),
#      PORT (29500), MASTER_ADDR (127.0.0.1)
# Every argument is passed on as is (paths with spaces included).
set -e
if [ $# -lt 2 ]; then
    echo "usage: bash tools/dist_train.sh CONFIG GPUS [train.py args...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
if [ -z "${PYTHON:-}" ]; then
    if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$DIR/train.py" \
    "$CONFIG" \
    --launcher pytorch "$@"
