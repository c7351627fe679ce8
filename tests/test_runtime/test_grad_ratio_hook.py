# Copyright (c) mmreviewkd contributors. All rights reserved.
"""DistillGradRatioHook: the gradient norms it has measured, its warning at
an absurd weight and its silence at the shipped config's weight."""
import logging
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmreviewkd.engine.hooks import DistillGradRatioHook
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.utils.config_check import load_config
from mmreviewkd.utils.distill_runtime import prepare_distill_runtime

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'reviewkd', 'cifar100',
                  'reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py')


class Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def distiller(**overrides):
    cfg = load_config(CONFIG).model
    cfg.teacher_ckpt = None
    cfg.update(overrides)
    cfg.pop('type')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(**cfg)
    model.train()
    return model


def train_epochs(model, epochs=1, iters=3, hook=None):
    """Drive the hook like the Runner does, with SGD steps on random
    CIFAR-sized batches; returns the warnings logged."""
    hook = hook or DistillGradRatioHook(interval=1)
    handler = Records()
    logger = MMLogger.get_instance('grad_ratio_test')
    logger.addHandler(handler)
    runner = SimpleNamespace(model=model, logger=logger, epoch=0)
    optim = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01)
    g = torch.Generator().manual_seed(0)
    # full weights: past the config's 20 warm-up epochs
    MessageHub.get_current_instance().update_info('epoch', 20)
    try:
        for _ in range(epochs):
            hook.before_train_epoch(runner)
            for i in range(iters):
                inputs = torch.randn(8, 3, 32, 32, generator=g)
                samples = [DataSample().set_gt_label(k) for k in range(8)]
                hook.before_train_iter(runner, i)
                loss, _ = model.parse_losses(model.loss(inputs, samples))
                optim.zero_grad()
                loss.backward()
                optim.step()
                hook.after_train_iter(runner, i)
            runner.epoch += 1
            hook.after_train_epoch(runner)
    finally:
        logger.removeHandler(handler)
        MessageHub.get_current_instance().update_info('epoch', 0)
    return [m for m in handler.messages if 'DistillGradRatioHook' in m]


def test_probe_measures_the_gradient_norms_into_the_last_stage():
    model = distiller()
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(k) for k in range(4)]
    MessageHub.get_current_instance().update_info('epoch', 20)
    model.grad_probe = True
    losses = model.loss(inputs, samples)
    MessageHub.get_current_instance().update_info('epoch', 0)
    assert not model.grad_probe  # one measurement per request
    layer3 = list(model.student.backbone.layer3.parameters())
    expected = []
    for value in (losses['student.loss'], losses['loss_hcl']):
        grads = torch.autograd.grad(value, layer3, retain_graph=True)
        expected.append(torch.sqrt(sum((g**2).sum() for g in grads)))
    torch.testing.assert_close(losses['grad_norm.task'], expected[0])
    torch.testing.assert_close(losses['grad_norm.distill'], expected[1])
    torch.testing.assert_close(losses['grad_ratio'],
                               expected[1] / expected[0])
    probe = model.last_grad_probe
    assert probe['full_weight'] and probe['ratio'] == pytest.approx(
        float(expected[1] / expected[0]), rel=1e-5)
    # no probe unless asked
    assert 'grad_ratio' not in model.loss(inputs, samples)


def test_absurd_weight_warns_once_with_the_direction():
    warnings = train_epochs(distiller(loss_weight=1e4), epochs=2)
    assert len(warnings) == 1
    assert 'dominate' in warnings[0] and 'lower model.loss_weight' in \
        warnings[0] and '(now 10000)' in warnings[0]


def test_vanishing_weight_warns_with_the_other_direction():
    warnings = train_epochs(distiller(loss_weight=1e-5))
    assert len(warnings) == 1 and 'raise model.loss_weight' in warnings[0]


def test_the_shipped_weight_is_silent():
    model = distiller()
    assert model.loss_weight == 0.6
    assert train_epochs(model, epochs=2) == []


def test_warm_up_epochs_are_not_judged():
    model = distiller(loss_weight=1e4)
    hook = DistillGradRatioHook(interval=1)
    runner = SimpleNamespace(model=model, logger=None, epoch=0)
    MessageHub.get_current_instance().update_info('epoch', 3)
    try:
        hook.before_train_epoch(runner)
        hook.before_train_iter(runner, 0)
        model.loss(torch.randn(4, 3, 32, 32),
                   [DataSample().set_gt_label(k) for k in range(4)])
        hook.after_train_iter(runner, 0)
    finally:
        MessageHub.get_current_instance().update_info('epoch', 0)
    assert hook._ratios == []  # 3 / 20 of the weight: not judged
    hook.after_train_epoch(runner)  # no logger needed: nothing to say


def test_the_hook_is_on_in_reviewkd_configs():
    cfg = prepare_distill_runtime(load_config(CONFIG))
    hooks = [h for h in cfg.custom_hooks
             if h['type'] == 'mmreviewkd.DistillGradRatioHook']
    assert hooks == [dict(type='mmreviewkd.DistillGradRatioHook',
                          interval=50)]
