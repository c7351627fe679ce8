# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Resume round trip through tools/train.py under torch >= 2.6.

train 2 epochs, resume to 3  ==  train 3 epochs (same seed): epoch counter,
optimizer (momentum) state and LR schedule must all continue.
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from helpers import make_cifar100

# weights-only loading by default (and its allow-list): torch >= 2.6
TORCH_2_6 = pytest.mark.skipif(
    tuple(int(x) for x in torch.__version__.split('.')[:2]) < (2, 6),
    reason='torch < 2.6 loads unrestricted by default; safe_load covers it')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIG = '''
_base_ = ['mmpretrain::_base_/default_runtime.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=10, mean=[128., 128., 128.],
                         std=[64., 64., 64.], to_rgb=False)
train_dataloader = dict(
    batch_size=16, num_workers=0,
    dataset=dict(type='mmreviewkd.CIFAR100', data_root=r'{data_root}',
                 split='train', verify_md5=False,
                 pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4,
                   nesterov=True))
# `end` is explicit: the first half of the split run stops at max_epochs=2,
# which would otherwise also end the schedule at epoch 2.
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[2],
                       gamma=0.1, begin=0, end=3)
train_cfg = dict(by_epoch=True, max_epochs=3)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0, deterministic=True)
'''


def run_train(config, work_dir, *extra):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir,
        *extra
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def scalars(work_dir):
    """Logged (epoch, iter) -> record of the newest run in work_dir."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


@pytest.mark.slow
def test_resume_round_trip(tmp_path):
    classes = [f'c{i}' for i in range(10)]
    make_cifar100(str(tmp_path / 'data'), classes=classes, num_train=64)
    config = tmp_path / 'tiny_cfg.py'
    config.write_text(CONFIG.format(data_root=tmp_path / 'data'))

    full_dir = str(tmp_path / 'full')
    run_train(str(config), full_dir)

    part_dir = str(tmp_path / 'part')
    run_train(str(config), part_dir, '--cfg-options', 'train_cfg.max_epochs=2')
    assert not osp.exists(osp.join(part_dir, 'epoch_3.pth'))
    proc = run_train(str(config), part_dir, '--resume')
    assert 'resumed epoch: 2' in proc.stdout + proc.stderr

    full = scalars(full_dir)
    resumed = scalars(part_dir)
    # the resumed run only trains epoch 3 (4 iterations of 16 images)
    assert {r['epoch'] for r in resumed} == {3}
    assert [r['iter'] for r in resumed] == [9, 10, 11, 12]
    full_e3 = [r for r in full if r['epoch'] == 3]
    assert len(full_e3) == 4
    for a, b in zip(full_e3, resumed):
        assert a['lr'] == pytest.approx(0.01) and b['lr'] == pytest.approx(
            0.01)
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-4, abs=1e-5)

    ck_full = torch.load(osp.join(full_dir, 'epoch_3.pth'), map_location='cpu')
    ck_part = torch.load(osp.join(part_dir, 'epoch_3.pth'), map_location='cpu')
    assert ck_part['meta']['epoch'] == 3 and ck_part['meta']['iter'] == 12
    for key, value in ck_full['state_dict'].items():
        torch.testing.assert_close(
            ck_part['state_dict'][key], value, rtol=1e-4, atol=1e-5)
    # momentum buffers continued (they would differ after a fresh start)
    mom_full = ck_full['optimizer']['state']
    mom_part = ck_part['optimizer']['state']
    for k in mom_full:
        torch.testing.assert_close(
            mom_part[k]['momentum_buffer'],
            mom_full[k]['momentum_buffer'],
            rtol=1e-4,
            atol=1e-5)
    assert ck_part['param_schedulers'] == ck_full['param_schedulers']
    assert ck_part['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.01)


@TORCH_2_6
def test_weights_only_load_of_an_mmengine_checkpoint_is_allow_listed(
        tmp_path):
    """The message-hub state of a checkpoint needs only allow-listed types
    (and no others) to load with weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub

    import mmreviewkd  # noqa: F401  (registers the allow-list)
    hub = MessageHub.get_instance('allow_list_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/lr', np.float64(0.1))
    hub.update_info('arr', np.arange(3))
    path = tmp_path / 'ck.pth'
    torch.save({'meta': {'message_hub': hub.state_dict()}}, path)
    # without the allow-list (a fresh interpreter) torch refuses the file
    code = ('import torch, mmengine.logging\n'
            f'torch.load({str(path)!r}, weights_only=True)')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'Unsupported global' in proc.stderr
    loaded = torch.load(path, weights_only=True)
    buf = loaded['meta']['message_hub']['log_scalars']['train/loss']
    assert buf.current() == 1.5
    assert loaded['meta']['message_hub']['runtime_info']['arr'].tolist() == [
        0, 1, 2
    ]


@TORCH_2_6
def test_arbitrary_pickles_stay_blocked(tmp_path):
    import mmreviewkd  # noqa: F401

    class Evil:

        def __reduce__(self):
            return (print, ('pwned', ))

    path = tmp_path / 'evil.pth'
    torch.save({'x': Evil()}, path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path)


def test_safe_load_reads_mmengine_checkpoints_and_blocks_pickles(tmp_path):
    """Every torch version: mmreviewkd's own reads (teacher, test, resume
    and extract checks) go through safe_load."""
    import numpy as np
    from mmengine.logging import MessageHub

    from mmreviewkd.utils.checkpoint_safety import safe_load
    hub = MessageHub.get_instance('safe_load_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('arr', np.arange(3))
    path = tmp_path / 'ck.pth'
    torch.save({'message_hub': hub.state_dict(), 'state_dict': {}}, path)
    loaded = safe_load(str(path))
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == \
        1.5

    class Evil:

        def __reduce__(self):
            return (print, ('pwned', ))

    torch.save({'x': Evil()}, path)
    with pytest.raises(Exception, match='Unsupported global'):
        safe_load(str(path))


def test_restricted_getattr_refuses_other_attributes():
    import pickle

    from mmengine.logging import HistoryBuffer

    from mmreviewkd.utils.checkpoint_safety import history_buffer_getattr
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (torch, 'load'),
                      (HistoryBuffer, '__class__')):
        with pytest.raises(pickle.UnpicklingError, match='refusing'):
            history_buffer_getattr(obj, name)
