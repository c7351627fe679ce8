# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Every shipped classification config builds, infers the method's channels
and runs one loss step on a tiny input; configs state no distiller default."""
import glob
import inspect
import os.path as osp

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmreviewkd.models.distillers import ReviewKDDistiller
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.config_check import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# The paper's / authors' per-pair settings: student C, teacher C (shallow ->
# deep), mid, lambda, student and teacher spatial sizes of the stage levels
# at the infer size.
CIFAR_R = [16, 32, 64, 64]
R32X4 = [64, 128, 256, 256]
WRN2 = [32, 64, 128, 128]
SHUF1 = [240, 480, 960, 960]
MV2 = [12, 16, 48, 160, 1280]
VGG = [128, 256, 512, 512, 512]
S32 = [32, 16, 8, 1]
EXPECTED = {
    'reviewkd_resnet56_resnet20': (CIFAR_R, CIFAR_R, 64, 0.6, S32, S32),
    'reviewkd_resnet110_resnet32': (CIFAR_R, CIFAR_R, 64, 1.0, S32, S32),
    'reviewkd_resnet32x4_resnet8x4': (R32X4, R32X4, 256, 5.0, S32, S32),
    'reviewkd_wrn40-2_wrn16-2': (WRN2, WRN2, 128, 5.0, S32, S32),
    'reviewkd_wrn40-2_wrn40-1': (CIFAR_R, WRN2, 64, 5.0, S32, S32),
    'reviewkd_vgg13_vgg8': (VGG, VGG, 512, 5.0, [16, 8, 4, 4, 1],
                            [16, 8, 4, 4, 1]),
    'reviewkd_resnet32x4_shufflenetv1-g3': (SHUF1, R32X4, 512, 5.0,
                                            [16, 8, 4, 1], S32),
    'reviewkd_wrn40-2_shufflenetv1-g3': (SHUF1, WRN2, 512, 5.0,
                                         [16, 8, 4, 1], S32),
    'reviewkd_resnet32x4_shufflenetv2': ([116, 232, 464, 1024], R32X4, 512,
                                         8.0, [16, 8, 4, 1], S32),
    'reviewkd_vgg13_mobilenetv2-0.5x': (MV2, VGG, 512, None, None,
                                        [16, 8, 4, 4, 1]),
    'reviewkd_resnet50_mobilenetv2-0.5x': (MV2, [256, 512, 1024, 2048, 2048],
                                           512, None, None,
                                           [32, 16, 8, 4, 1]),
    'reviewkd_resnet34_resnet18': ([64, 128, 256, 512, 512],
                                   [64, 128, 256, 512, 512], 512, 1.0,
                                   [56, 28, 14, 7, 1], [56, 28, 14, 7, 1]),
    'reviewkd_resnet50_mobilenetv1': ([128, 256, 512, 1024, 1024],
                                      [256, 512, 1024, 2048, 2048], 256, 8.0,
                                      [56, 28, 14, 7, 1], [56, 28, 14, 7, 1]),
    'reviewkd_resnet32_resnet8': (CIFAR_R, CIFAR_R, 64, 1.0, S32, S32),
}
# learning rates of the recipe apart from the CIFAR default 0.1
EXPECTED_LR = {
    'reviewkd_resnet32x4_shufflenetv1-g3': 0.02,
    'reviewkd_wrn40-2_shufflenetv1-g3': 0.02,
    'reviewkd_resnet32x4_shufflenetv2': 0.02,
    'reviewkd_vgg13_mobilenetv2-0.5x': 0.01,
    'reviewkd_resnet50_mobilenetv2-0.5x': 0.02,
}


def _configs(*patterns):
    found = []
    for pattern in patterns:
        found += glob.glob(osp.join(ROOT, 'configs', pattern), recursive=True)
    return sorted(found)


DISTILL_CFGS = _configs('reviewkd/cifar100/*.py', 'reviewkd/imagenet/*.py',
                        'quickstart/reviewkd_*.py')
BASELINE_CFGS = _configs('baselines/cifar100/*.py', 'baselines/imagenet/*.py',
                         'quickstart/resnet*.py')


def _key(path):
    return osp.basename(path).split('_8xb')[0].split('_1xb')[0]


def build_model(cfg):
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return MODELS.build(model_cfg)


def loss_step(model, size, n=2):
    inputs = torch.randn(n, 3, size, size)
    samples = [DataSample().set_gt_label(i) for i in range(n)]
    data = model.data_preprocessor(
        dict(inputs=list(inputs.mul(50).add(128).to(torch.uint8)),
             data_samples=samples), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    return losses


def test_every_distill_config_has_an_expectation():
    assert len(DISTILL_CFGS) >= 14
    assert {_key(p) for p in DISTILL_CFGS} == set(EXPECTED)
    # 22 CIFAR-100 + 1 ImageNet baselines + 2 quickstart models
    assert len(BASELINE_CFGS) == 25


@pytest.mark.parametrize('path', DISTILL_CFGS, ids=_key)
def test_distill_config_builds_with_spec_channels(path):
    cfg = load_config(path)
    assert cfg.model.type == 'mmreviewkd.ReviewKDDistiller'
    assert cfg.model.teacher_ckpt, 'every config names its teacher checkpoint'
    cfg.model.teacher_ckpt = None  # the user's file; weights don't matter
    s_c, t_c, mid, lam, s_sizes, t_sizes = EXPECTED[_key(path)]
    if lam is not None:
        assert cfg.model.loss_weight == lam
    assert_states_no_default(cfg.model, s_c)
    if 'cifar100' in path:
        assert cfg.optim_wrapper.optimizer.lr == EXPECTED_LR.get(
            _key(path), 0.1)
        assert cfg.model.warmup_epochs == 20
        assert cfg.train_cfg.max_epochs == 240
    model = build_model(cfg)
    assert model.connector.in_channels == s_c
    assert model.connector.out_channels == t_c
    assert model.connector.mid_channels == mid
    size = model.infer_input_shape[-1]
    s_shapes, t_shapes = model.infer_feature_shapes((3, size, size))
    assert [s[1] for s in s_shapes] == s_c
    assert [t[-1] for t in t_shapes] == t_sizes
    if s_sizes is not None:
        assert [s[-1] for s in s_shapes] == s_sizes
    model.train()
    # the CIFAR pairs at their size; ImageNet pairs at a small size (any
    # input size works: the ABFs take sizes from the tensors)
    losses = loss_step(model, 32 if size == 32 else 64)
    assert losses['loss_hcl'].item() > 0 or model.warmup_epochs > 0
    assert any(p.grad is not None for p in model.connector.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


def assert_states_no_default(model_cfg, student_channels):
    """A distiller config states only what differs from the defaults
    (lambda, ``loss_weight``, is always stated; the test clears
    ``teacher_ckpt``)."""
    params = inspect.signature(ReviewKDDistiller.__init__).parameters
    for name, param in params.items():
        if name in ('loss_weight', 'teacher_ckpt'):
            continue
        if name in model_cfg and (
                param.default is not inspect.Parameter.empty):
            assert model_cfg[name] != param.default, f'{name} is the default'
    mid = model_cfg.get('connector', {}).get('mid_channels')
    assert mid != min(512, student_channels[-1]), 'mid_channels is the default'


@pytest.mark.parametrize('path', BASELINE_CFGS, ids=_key)
def test_baseline_config_builds_and_trains_one_step(path):
    cfg = load_config(path)
    model = build_model(cfg)
    model.train()
    size = 64 if 'imagenet' in path else 32
    losses = loss_step(model, size)
    assert 'loss' in losses
