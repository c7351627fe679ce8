# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Mixed precision: ``tools/train.py --amp`` trains with bf16 autocast on
CPU (fp16 ``AmpOptimWrapper`` on GPU); the teacher forward runs under
autocast and HCL is accumulated in fp32."""
import importlib.util
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from helpers.fake_data import make_cifar100
from helpers.models import classifier
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import ROOT, logged_scalars, run_tool
from mmreviewkd.engine.optimizers import AutocastOptimWrapper
from mmreviewkd.models import ReviewKDDistiller


def load_train_tool():
    spec = importlib.util.spec_from_file_location(
        'amp_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_train_amp_on_cpu_uses_bf16_autocast_with_finite_losses(tmp_path):
    data = make_cifar100(
        str(tmp_path / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=32,
        num_test=16)
    config = tmp_path / 'amp.py'
    config.write_text(tiny_distill_config(data, max_epochs=2))
    work_dir = str(tmp_path / 'work')
    proc = run_tool('train.py', str(config), '--work-dir', work_dir, '--amp')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    dumped = Config.fromfile(osp.join(work_dir, 'amp.py'))
    assert dumped.optim_wrapper.type == 'mmreviewkd.AutocastOptimWrapper'
    assert dumped.optim_wrapper.dtype == 'bfloat16'
    records = logged_scalars(work_dir)
    assert len(records) == 8
    for r in records:
        assert math.isfinite(r['loss']) and math.isfinite(r['loss_hcl'])
    assert all(r['loss_hcl'] > 0 for r in records if r['epoch'] == 2)


def test_amp_flag_picks_fp16_amp_optim_wrapper_on_gpu(monkeypatch):
    train = load_train_tool()
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = train.merge_args(cfg, train.parse_args(['c.py', '--amp']))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # fp16 by default
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert 'dtype' not in cfg.optim_wrapper


def test_teacher_runs_under_autocast_and_hcl_stays_fp32():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(
            student=classifier(8),
            teacher=classifier(14),
            data_preprocessor=dict(
                type='mmpretrain.ClsDataPreprocessor', num_classes=10),
            teacher_feats=dict(preact=True))
    model.train()
    seen = {}

    def record(name):

        def hook(module, inputs, output):
            if isinstance(output, list):  # HCLLoss(per_level=True)
                output = sum(output)
            seen[name] = output.dtype
            if name == 'hcl':
                seen['hcl_inputs'] = {t.dtype for t in inputs[0]}

        return hook

    model.teacher.backbone.layer3.register_forward_hook(record('teacher'))
    model.student.backbone.layer3.register_forward_hook(record('student'))
    model.distill_loss.register_forward_hook(record('hcl'))
    wrapper = AutocastOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    data = dict(
        inputs=[
            torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
            for _ in range(4)
        ],
        data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    hub = MessageHub.get_current_instance()
    hub.update_info('epoch', 1)
    try:
        before = model.connector.abfs[0].conv1.weight.detach().clone()
        log_vars = model.train_step(data, wrapper)
    finally:
        hub.update_info('epoch', 0)
    assert seen['teacher'] == torch.bfloat16
    assert seen['student'] == torch.bfloat16
    assert seen['hcl_inputs'] == {torch.bfloat16}
    assert seen['hcl'] == torch.float32
    assert math.isfinite(float(log_vars['loss_hcl']))
    assert float(log_vars['loss_hcl']) > 0
    # parameters stay fp32 and were updated
    weight = model.connector.abfs[0].conv1.weight
    assert weight.dtype == torch.float32
    assert not torch.equal(weight.detach(), before)
    assert all(p.grad is None for p in model.teacher.parameters())
