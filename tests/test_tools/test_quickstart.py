# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The README's main job, shrunk: tools/quickstart.py end to end."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.slow
def test_quickstart_trains_three_models_and_prints_the_table(tmp_path):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'quickstart.py'), '--work-dir',
        str(tmp_path), '--epochs', '1', '--num-train', '128'
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    rows = dict(
        re.findall(r'^(teacher resnet32|student resnet8, trained alone|'
                   r'student resnet8, ReviewKD) +([0-9.]+)$', out, re.M))
    assert len(rows) == 3, out[-2000:]
    assert all(0.0 <= float(v) <= 100.0 for v in rows.values())
    # digits: 1797 images, 128 for training, the rest is the test set
    data = osp.join(str(tmp_path), 'data', 'cifar-100-python')
    assert all(
        osp.isfile(osp.join(data, f)) for f in ('train', 'test', 'meta'))
    student = osp.join(str(tmp_path), 'reviewkd', 'student_final.pth')
    assert f'student-only checkpoint: {student}' in out
    state = torch.load(student, map_location='cpu')['state_dict']
    assert state and all(k.startswith(('backbone.', 'head.')) for k in state)
    assert 'loss_hcl' in open(
        osp.join(str(tmp_path), 'reviewkd', 'train.log')).read()
    # the pictures: curves of both students, test images, their ABF maps
    pictures = osp.join(str(tmp_path), 'pictures')
    assert f'pictures in {pictures}:' in out
    curves = osp.join(pictures, 'curves.png')
    assert f'training curves (baseline vs ReviewKD): {curves}' in out
    images = re.findall(r'^  test image: (.+\.png)$', out, re.M)
    maps = re.findall(r'^  ABF attention maps: (.+\.png)$', out, re.M)
    assert len(images) == len(maps) == 4, out[-2000:]
    for path in [curves] + images + maps:
        assert path.startswith(pictures) and osp.getsize(path) > 0, path
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', path
