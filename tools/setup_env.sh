#!/usr/bin/env bash
# One-command environment setup for mmreviewkd: builds one of the two EXACT
# stacks CI tests, each in its own virtual environment.
#
#   bash tools/setup_env.sh                   # main stack   -> ./.venv
#   bash tools/setup_env.sh --stack oldest    # oldest stack -> ./.venv-oldest
#   MMREVIEWKD_STACK=oldest bash tools/setup_env.sh      # same as --stack oldest
#   MMREVIEWKD_VENV=/path  bash tools/setup_env.sh       # main stack elsewhere
#   MMREVIEWKD_VENV_OLDEST=/path bash tools/setup_env.sh --stack oldest
#
# Stacks (python3.11 by default, $PYTHON to override):
#   main    torch 2.13.0 + torchvision 0.28.0, mmcv 2.1.0 (ops), pins in
#           requirements/tested/main.txt (mmengine 0.10.7, mmpretrain 1.2.0,
#           mmdet 3.3.0)
#   oldest  torch 2.1.2 + torchvision 0.16.2, numpy<2, mmcv 2.1.0 (ops) built
#           against torch 2.1.2, pins in requirements/tested/oldest.txt
#           (mmengine 0.10.0, mmpretrain 1.1.0, mmdet 3.2.0)
# (To install mmreviewkd into an EXISTING environment instead, use
# `pip install -e .`, see README "Install"; it never touches torch or mmcv.)
#
# What it does (idempotent; a second run only verifies, in seconds):
#   1. creates the virtual environment
#   2. installs torch + torchvision from PyPI. A CPU-only torch wheel that may
#      sit in a local pip find-links folder is deliberately bypassed: no
#      torchvision wheel is built against it ("operator torchvision::nms does
#      not exist").
#   3. installs mmcv WITH its compiled ops (nms, RoIAlign; needed by mmdet),
#      from a wheel built for exactly this torch and python, kept in
#      $MMREVIEWKD_WHEELS/mmcv<ver>-torch<ver>-<cpXY>/ (default
#      ~/.cache/mmreviewkd/wheels, shared by every clone on the machine).
#      The first build takes ~10-15 min on 2 CPU cores; later setups on the
#      same machine reuse that stack's own wheel. (pip's wheel cache is not
#      used: it does not key on the torch version, and an mmcv built for
#      another torch fails with "undefined symbol" in mmcv._ext.)
#   4. installs the stack's pinned list (requirements/tested/<stack>.txt) with
#      torch/torchvision/mmcv held fixed, then `pip install -e . --no-deps`
#   5. verifies: versions, torchvision.ops.nms, mmcv.ops.nms, import mmreviewkd
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMREVIEWKD_STACK:-main}"
while [ $# -gt 0 ]; do
    case "$1" in
        --stack) STACK="${2:?--stack needs a value (main|oldest)}"; shift 2 ;;
        --stack=*) STACK="${1#--stack=}"; shift ;;
        *) echo "usage: bash tools/setup_env.sh [--stack main|oldest]" >&2; exit 2 ;;
    esac
done
case "$STACK" in
    main)
        VENV="${MMREVIEWKD_VENV:-$ROOT/.venv}"
        TORCH=2.13.0 TORCHVISION=0.28.0 MMCV=2.1.0
        TORCH_EXTRA=() ;;
    oldest)
        VENV="${MMREVIEWKD_VENV_OLDEST:-$ROOT/.venv-oldest}"
        TORCH=2.1.2 TORCHVISION=0.16.2 MMCV=2.1.0
        TORCH_EXTRA=('numpy>=1.24,<2') ;;
    *) echo "[setup] ERROR: unknown stack '$STACK' (main|oldest)" >&2; exit 2 ;;
esac
PINS="$ROOT/requirements/tested/$STACK.txt"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

T0=$(date +%s)
step() { printf '[setup %s %4ss] %s\n' "$STACK" "$(( $(date +%s) - T0 ))" "$*"; }

# Everything that changes what gets installed goes into the stamp.
STAMP_SRC=$( (echo "$STACK"; cat "$ROOT/tools/setup_env.sh" "$ROOT"/requirements/*.txt \
    "$ROOT"/requirements/tested/*.txt "$ROOT/setup.py") | sha1sum | cut -c1-12)
STAMP="$VENV/.mmreviewkd-setup-$STAMP_SRC"
export TORCH TORCHVISION MMCV PINS

verify() {
    "$VENV/bin/python" - <<'EOF'
import os, re
from importlib import metadata
import torch, torchvision
from torchvision.ops import nms
import mmcv, mmengine, mmdet, mmpretrain
from mmcv.ops import nms as mmcv_nms
want = {'torch': os.environ['TORCH'], 'torchvision': os.environ['TORCHVISION'],
        'mmcv': os.environ['MMCV']}
for line in open(os.environ['PINS']):
    m = re.match(r'\s*([A-Za-z0-9_.-]+)==(\S+)', line)
    if m:
        want[m.group(1)] = m.group(2)
for name, version in want.items():
    found = metadata.version(name).split('+')[0]
    assert found == version, f'{name}=={found} installed, the stack pins {version}'
assert not torch.__version__.endswith('+cpu'), torch.__version__
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
s = torch.tensor([0.9, 0.8])
assert nms(b, s, 0.5).tolist() == [0], 'torchvision nms gave a wrong result'
dets, keep = mmcv_nms(b, s, 0.5)
assert keep.tolist() == [0], 'mmcv.ops.nms gave a wrong result'
from mmengine.utils import get_installed_path  # needs pkg_resources
get_installed_path('mmpretrain')
import numpy
import mmreviewkd
print(f'[setup] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'numpy {numpy.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmpretrain {mmpretrain.__version__}, mmreviewkd {mmreviewkd.__version__}')
EOF
}

if [ -f "$STAMP" ] && verify; then
    step "environment $VENV is up to date (delete $STAMP to force a reinstall)"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    step "creating virtual environment $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip 'setuptools<70' wheel ninja

# --- 2. torch + torchvision -------------------------------------------------------
torch_ok() {
    "$VENV/bin/python" -c "
import torch, torchvision
from torchvision.ops import nms
assert torch.__version__.split('+')[0] == '$TORCH' and not torch.__version__.endswith('+cpu'), torch.__version__
assert torchvision.__version__.split('+')[0] == '$TORCHVISION', torchvision.__version__
" 2>/dev/null
}
# Ignore local find-links / extra indexes that may hold a '+cpu' torch build.
pypi_only() { env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null "$@"; }
if ! torch_ok; then
    step "installing torch $TORCH + torchvision $TORCHVISION from PyPI (~1-3 min)"
    pypi_only "${PIP[@]}" install --progress-bar off "torch==$TORCH" \
        "torchvision==$TORCHVISION" "${TORCH_EXTRA[@]+"${TORCH_EXTRA[@]}"}"
    if ! torch_ok; then
        step "torch/torchvision do not import together; forcing a reinstall of the PyPI builds"
        pypi_only "${PIP[@]}" install --progress-bar off --force-reinstall --no-deps \
            "torch==$TORCH" "torchvision==$TORCHVISION"
    fi
    torch_ok || { echo "[setup] ERROR: 'import torchvision' fails against the installed torch; see the messages above" >&2; exit 1; }
fi

# --- 3. mmcv with compiled ops, from this stack's own wheel ------------------------------
PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEELDIR="${MMREVIEWKD_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/mmreviewkd/wheels}/mmcv$MMCV-torch$TORCH-$PYTAG"
mmcv_ok() {
    "$VENV/bin/python" -c "import mmcv; assert mmcv.__version__ == '$MMCV'; from mmcv.ops import nms, RoIAlign" 2>"$VENV/.mmcv-import-error.txt"
}
mmcv_wheel() { ls "$WHEELDIR"/mmcv-"$MMCV"-*.whl 2>/dev/null | head -1; }
install_mmcv_wheel() {
    if [ -z "$(mmcv_wheel)" ]; then
        step "building mmcv $MMCV with compiled ops against torch $TORCH into $WHEELDIR (~10-15 min on 2 cores; reused afterwards)"
        # mmcv's setup.py imports pkg_resources (gone from recent setuptools).
        "${PIP[@]}" install -q 'setuptools<70'
        mkdir -p "$WHEELDIR"
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${PIP[@]}" wheel --progress-bar off --no-cache-dir --no-build-isolation \
            --no-deps -w "$WHEELDIR" "mmcv==$MMCV"
    fi
    step "installing mmcv $MMCV from $(mmcv_wheel)"
    # its dependencies come with the pinned list below
    "${PIP[@]}" install -q --force-reinstall --no-deps "$(mmcv_wheel)"
}
mmcv_ok || install_mmcv_wheel

# --- 4. the pinned rest ------------------------------------------------------------------
step "installing the pinned stack (requirements/tested/$STACK.txt)"
# hold torch / torchvision / mmcv exactly where steps 2-3 put them
HOLD="$VENV/.mmreviewkd-hold.txt"
"$VENV/bin/python" -c "
from importlib.metadata import version
for n in ('torch', 'torchvision', 'mmcv'):
    print(f'{n}=={version(n)}')" > "$HOLD"
"${PIP[@]}" install -q --progress-bar off -c "$HOLD" -r "$PINS" "mmcv==$MMCV"
if ! mmcv_ok; then
    # with its dependencies in place, a failing import is the wheel itself, e.g.
    # "undefined symbol" in mmcv._ext: built for another torch. Rebuild once.
    step "mmcv.ops does not import ($(tail -1 "$VENV/.mmcv-import-error.txt")); rebuilding the wheel"
    rm -f "$WHEELDIR"/mmcv-*.whl
    install_mmcv_wheel
    mmcv_ok || { cat "$VENV/.mmcv-import-error.txt" >&2; echo "[setup] ERROR: mmcv $MMCV installed but mmcv.ops does not import (see above)" >&2; exit 1; }
fi
step "installing mmreviewkd (editable, --no-deps)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

# --- 5. verify ------------------------------------------------------------------------------
step "verifying"
torch_ok || { echo "[setup] ERROR: a later install replaced torch/torchvision with a build that does not import" >&2; exit 1; }
mmcv_ok || { echo "[setup] ERROR: a later install replaced mmcv $MMCV with a build whose ops do not import" >&2; exit 1; }
verify
rm -f "$VENV"/.mmreviewkd-setup-*
touch "$STAMP"
step "done. Activate with: source $VENV/bin/activate"
