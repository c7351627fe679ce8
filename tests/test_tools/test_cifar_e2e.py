# Copyright (c) mmreviewkd contributors. All rights reserved.
"""End to end on a fake CIFAR-100 in the real pickle format, with the shipped
resnet56 -> resnet20 configs: train a teacher, distil, test, export."""
import glob
import json
import os.path as osp
import pickle
import re
import subprocess
import sys

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from helpers import make_cifar100
from mmreviewkd.utils.config_check import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEACHER_CFG = osp.join(ROOT, 'configs/baselines/cifar100/'
                       'resnet56_8xb16-240e_cifar100.py')
STUDENT_CFG = osp.join(ROOT, 'configs/baselines/cifar100/'
                       'resnet20_8xb16-240e_cifar100.py')
DISTILL_CFG = osp.join(
    ROOT, 'configs/reviewkd/cifar100/'
    'reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py')


def data_options(data_root):
    opts = []
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.dataset.verify_md5=False',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    return opts + ['train_dataloader.batch_size=16']


def run_tool(tool, *args):
    cmd = [sys.executable, osp.join(ROOT, 'tools', tool), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 1-epoch teacher and a 2-epoch distilled student, via tools/."""
    tmp = tmp_path_factory.mktemp('cifar_e2e')
    data_root = str(make_cifar100(str(tmp / 'data'), num_train=48,
                                  num_test=24))
    opts = data_options(data_root)
    teacher_dir = str(tmp / 'teacher')
    run_tool('train.py', TEACHER_CFG, '--work-dir', teacher_dir,
             '--cfg-options', 'train_cfg.max_epochs=1',
             'default_hooks.checkpoint.interval=1', *opts)
    teacher_ckpt = osp.join(teacher_dir, 'epoch_1.pth')
    assert osp.isfile(teacher_ckpt)
    distill_dir = str(tmp / 'distill')
    log = run_tool('train.py', DISTILL_CFG, '--work-dir', distill_dir,
                   '--cfg-options', 'train_cfg.max_epochs=2',
                   'model.warmup_epochs=1',
                   'default_hooks.checkpoint.interval=1',
                   'default_hooks.logger.interval=1',
                   f'model.teacher_ckpt={teacher_ckpt}', *opts)
    return dict(
        tmp=tmp,
        opts=opts,
        data_root=data_root,
        teacher_ckpt=teacher_ckpt,
        distill_dir=distill_dir,
        log=log)


@pytest.mark.slow
def test_train_logs_distillation_and_evaluates_teacher(trained):
    log = trained['log']
    assert f'Loaded teacher weights from {trained["teacher_ckpt"]}' in log
    # the logged total is what is optimised: the student's loss plus HCL;
    # the per-level HCL values are logged too, not added again
    records = [
        json.loads(line) for path in glob.glob(
            osp.join(trained['distill_dir'], '*', 'vis_data', 'scalars.json'))
        for line in open(path)
    ]
    records = [r for r in records if 'loss' in r]
    assert records
    for r in records:
        assert r['loss'] == pytest.approx(
            r['student.loss'] + r['loss_hcl'], rel=1e-3, abs=1e-4)
        levels = [r[k] for k in r if k.startswith('loss_hcl.')]
        if r['loss_hcl'] > 0:
            assert len(levels) == 4  # three stages + the pooled level
            assert sum(levels) == pytest.approx(
                r['loss_hcl'], rel=1e-3, abs=1e-4)
    assert re.search(r'Teacher on the val set before distillation: '
                     r'accuracy/top1: [0-9.]+', log)
    # epoch 1 (0-based 0) has no feature loss, epoch 2 the full weight 0.6
    weights = [
        float(w) for w in re.findall(r'distill_weight: ([0-9.]+)', log)
    ]
    hcl = [float(w) for w in re.findall(r'loss_hcl: ([0-9.]+)', log)]
    assert weights and hcl
    assert weights[0] == 0.0 and weights[-1] == pytest.approx(0.6)
    assert hcl[0] == 0.0 and hcl[-1] > 0.0
    assert osp.isfile(osp.join(trained['distill_dir'], 'student_final.pth'))


@pytest.mark.slow
def test_student_export_loads_into_plain_config_with_same_predictions(
        trained):
    tmp, opts = trained['tmp'], trained['opts']
    distill_ckpt = osp.join(trained['distill_dir'], 'epoch_2.pth')
    student_ckpt = osp.join(trained['distill_dir'], 'student_final.pth')
    exported = torch.load(student_ckpt, map_location='cpu')
    keys = list(exported['state_dict'])
    assert keys and not any(
        k.startswith(('teacher.', 'connector.', 'student.')) for k in keys)
    assert 'optimizer' not in exported and 'message_hub' not in exported
    assert any(k.startswith('backbone.') for k in keys)

    # the same export through the converter tool
    tool_ckpt = str(tmp / 'student_tool.pth')
    run_tool('model_converters/extract_student.py', distill_ckpt, tool_ckpt)
    from_tool = torch.load(tool_ckpt, map_location='cpu')['state_dict']
    assert set(from_tool) == set(keys)
    for k in keys:
        torch.testing.assert_close(from_tool[k], exported['state_dict'][k])

    test_opts = [o for o in opts if not o.startswith('train_')]
    out_distiller = str(tmp / 'distiller.pkl')
    out_student = str(tmp / 'student.pkl')
    log_d = run_tool('test.py', DISTILL_CFG, distill_ckpt, '--work-dir',
                     str(tmp / 'test_d'), '--out', out_distiller,
                     '--cfg-options', 'model.teacher_ckpt=None', *test_opts)
    log_s = run_tool('test.py', STUDENT_CFG, student_ckpt, '--work-dir',
                     str(tmp / 'test_s'), '--out', out_student,
                     '--cfg-options', *test_opts)
    acc_d = re.findall(r'accuracy/top1: ([0-9.]+)', log_d)
    acc_s = re.findall(r'accuracy/top1: ([0-9.]+)', log_s)
    assert acc_d and acc_d == acc_s
    with open(out_distiller, 'rb') as f:
        pred_d = pickle.load(f)
    with open(out_student, 'rb') as f:
        pred_s = pickle.load(f)
    assert len(pred_d) == len(pred_s) == 24
    for a, b in zip(pred_d, pred_s):
        torch.testing.assert_close(a['pred_score'], b['pred_score'])


class ModeRecorder(Hook):
    """Records the teacher's and student's mode at every train iteration."""

    def __init__(self):
        self.modes = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = runner.model
        self.modes.append(
            (model.student.training,
             any(m.training for m in model.teacher.modules())))


@pytest.mark.slow
def test_teacher_stays_in_eval_through_runner_train(trained, tmp_path):
    cfg = load_config(DISTILL_CFG)
    cfg.merge_from_dict({
        o.split('=', 1)[0]: (False if o.endswith('=False') else
                             int(o.split('=', 1)[1]) if o.split('=', 1)[1]
                             .isdigit() else o.split('=', 1)[1])
        for o in trained['opts']
    })
    cfg.work_dir = str(tmp_path)
    cfg.model.teacher_ckpt = trained['teacher_ckpt']
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.custom_hooks = [
        h for h in cfg.custom_hooks if 'StudentExport' not in h['type']
    ]
    runner = Runner.from_cfg(cfg)
    recorder = ModeRecorder()
    runner.register_hook(recorder)
    before = {
        k: v.clone()
        for k, v in runner.model.teacher.state_dict().items()
    }
    runner.train()
    assert len(recorder.modes) == 3  # 48 images / 16
    assert all(student for student, _ in recorder.modes)
    assert not any(teacher for _, teacher in recorder.modes)
    for k, v in runner.model.teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert glob.glob(osp.join(str(tmp_path), 'epoch_1.pth'))


@pytest.mark.slow
def test_compared_method_config_trains_with_the_datasets_labels_and_indices(
        trained, tmp_path):
    """CRD (sample indices, labels) plus DKD (labels) on top of the shipped
    CRD config, one epoch through tools/train.py: both terms are logged and
    the memory bank holds every training image's label at its index."""
    cfg = osp.join(ROOT, 'configs/compare/crd/'
                   'crd_resnet56_resnet20_8xb16-240e_cifar100.py')
    work_dir = str(tmp_path / 'crd')
    log = run_tool(
        'train.py', cfg, '--work-dir', work_dir, '--cfg-options',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
        'model.distill_terms.crd.loss.num_negatives=64',
        'model.distill_terms.dkd.loss.type=DKDLoss',
        'model.distill_terms.dkd.inputs=logits',
        f'model.teacher_ckpt={trained["teacher_ckpt"]}', *trained['opts'])
    assert re.search(r'loss_crd: \d', log) and re.search(r'loss_dkd: \d', log)
    ckpt = torch.load(
        osp.join(work_dir, 'epoch_1.pth'), map_location='cpu',
        weights_only=False)
    labels = next(v for k, v in ckpt['state_dict'].items()
                  if k.startswith('distill_terms.crd.') and
                  k.endswith('labels'))
    with open(osp.join(trained['data_root'], 'cifar-100-python', 'train'),
              'rb') as f:
        fine = pickle.load(f, encoding='latin1')['fine_labels']
    # drop_last: every full batch of the 48 images was seen once
    seen = labels[:len(fine)] >= 0
    assert seen.sum() == 48
    assert labels[:len(fine)][seen].tolist() == [
        fine[i] for i in range(len(fine)) if seen[i]
    ]
    assert (labels[len(fine):] == -1).all()
