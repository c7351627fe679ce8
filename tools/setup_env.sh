#!/usr/bin/env bash
# One-command environment setup for mmreviewkd.
#
#   bash tools/setup_env.sh            # creates ./.venv and installs the pinned stack
#   MMREVIEWKD_VENV=/path bash tools/setup_env.sh
#
# What it does (idempotent; a second run only verifies, in seconds):
#   1. creates a virtual environment (python3.11 by default, $PYTHON to override)
#   2. installs torch 2.13.0 + torchvision 0.28.0 from PyPI. A CPU-only torch wheel
#      that may sit in a local pip find-links folder is deliberately bypassed: no
#      torchvision wheel is built against it ("operator torchvision::nms does not exist").
#   3. builds mmcv 2.1.0 WITH its compiled ops (nms, RoIAlign; needed by mmdet). The
#      first build takes ~10-15 min on 2 CPU cores; pip caches the wheel, so later
#      setups on the same machine reuse it.
#   4. installs mmengine / mmdet / mmpretrain / pycocotools / test tools and
#      `pip install -e .` of this repository
#   5. verifies: import torchvision, torchvision.ops.nms, mmcv.ops.nms, mmreviewkd
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMREVIEWKD_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

T0=$(date +%s)
step() { printf '[setup %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# Everything that changes what gets installed goes into the stamp.
STAMP_SRC=$(cat "$ROOT/tools/setup_env.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha1sum | cut -c1-12)
STAMP="$VENV/.mmreviewkd-setup-$STAMP_SRC"

verify() {
    "$VENV/bin/python" - <<'EOF'
import torch, torchvision
from torchvision.ops import nms
import mmcv, mmengine, mmdet, mmpretrain
from mmcv.ops import nms as mmcv_nms
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
s = torch.tensor([0.9, 0.8])
assert nms(b, s, 0.5).tolist() == [0], 'torchvision nms gave a wrong result'
dets, keep = mmcv_nms(b, s, 0.5)
assert keep.tolist() == [0], 'mmcv.ops.nms gave a wrong result'
from mmengine.utils import get_installed_path  # needs pkg_resources
get_installed_path('mmpretrain')
import mmreviewkd
print(f'[setup] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmcv {mmcv.__version__} (ops), mmengine {mmengine.__version__}, '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmreviewkd {mmreviewkd.__version__}')
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
assert torch.__version__.split('+')[0] == '2.13.0' and not torch.__version__.endswith('+cpu'), torch.__version__
assert torchvision.__version__.split('+')[0] == '0.28.0', torchvision.__version__
" 2>/dev/null
}
if ! torch_ok; then
    step "installing torch 2.13.0 + torchvision 0.28.0 from PyPI (~1-3 min)"
    # Ignore local find-links / extra indexes that may hold a '+cpu' torch build.
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        "${PIP[@]}" install --progress-bar off 'torch==2.13.0' 'torchvision==0.28.0'
    if ! torch_ok; then
        step "torch/torchvision do not import together; forcing a reinstall of the PyPI builds"
        env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
            "${PIP[@]}" install --progress-bar off --force-reinstall --no-deps \
            'torch==2.13.0' 'torchvision==0.28.0'
    fi
    torch_ok || { echo "[setup] ERROR: 'import torchvision' fails against the installed torch; see the messages above" >&2; exit 1; }
fi

# --- 3. mmcv with compiled ops ---------------------------------------------------------
mmcv_ok() {
    "$VENV/bin/python" -c "import mmcv; assert mmcv.__version__ == '2.1.0'; from mmcv.ops import nms, RoIAlign" 2>/dev/null
}
if ! mmcv_ok; then
    step "installing mmcv 2.1.0 with compiled ops (first build on a machine: ~10-15 min on 2 cores; cached afterwards)"
    # mmcv's setup.py imports pkg_resources (gone from recent setuptools).
    "${PIP[@]}" install -q 'setuptools<70' 'mmengine==0.10.7' opencv-python-headless
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" install --progress-bar off --no-build-isolation 'mmcv==2.1.0'
    mmcv_ok || { echo "[setup] ERROR: mmcv 2.1.0 installed but mmcv.ops does not import (built without ops?)" >&2; exit 1; }
fi

# --- 4. the rest ---------------------------------------------------------------------------
step "installing mmengine, mmdet, mmpretrain, pycocotools, test tools"
"${PIP[@]}" install -q --progress-bar off \
    -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/tests.txt"
step "installing mmreviewkd (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

# --- 5. verify ------------------------------------------------------------------------------
step "verifying"
torch_ok || { echo "[setup] ERROR: a later install replaced torch/torchvision with a build that does not import" >&2; exit 1; }
verify
rm -f "$VENV"/.mmreviewkd-setup-*
touch "$STAMP"
step "done. Activate with: source $VENV/bin/activate"
