# Copyright (c) mmreviewkd contributors. All rights reserved.
"""OFDLoss (margins, partial L2, level weights) and OFDConnector."""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.registry import DefaultScope

from helpers.models import classifier
from mmreviewkd.models.connectors.ofd_connector import OFDConnector
from mmreviewkd.models.losses.ofd import (OFDLoss, gaussian_negative_margin,
                                          margins_from_bn)
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError


def integrated_margin(mean, std):
    """E[x | x < 0] for x ~ N(mean, std^2) by trapezoidal integration."""
    std = abs(std)
    x = torch.linspace(
        min(mean - 12 * std, -1e-9), 0.0, 400001, dtype=torch.float64)
    density = torch.exp(-((x - mean) / std)**2 / 2)
    return (torch.trapezoid(x * density, x) /
            torch.trapezoid(density, x)).item()


@pytest.mark.parametrize('mean,std', [(0.0, 1.0), (1.0, 2.0), (-1.0, 0.5),
                                      (2.0, 1.0), (0.3, -0.7), (6.0, 2.0)])
def test_margin_matches_integral(mean, std):
    assert gaussian_negative_margin(mean, std) == pytest.approx(
        integrated_margin(mean, std), rel=1e-5)


def test_margin_closed_forms_and_minus_three_sigma_branch():
    # m = 0: half-normal, -s * sqrt(2 / pi)
    assert gaussian_negative_margin(0.0, 2.0) == pytest.approx(
        -2.0 * math.sqrt(2 / math.pi), rel=1e-12)
    # Phi(-4) = 3.2e-5 <= 0.001 and Phi(-3.5) = 2.3e-4: -3 s
    assert gaussian_negative_margin(4.0, 1.0) == -3.0
    assert gaussian_negative_margin(7.0, -2.0) == -6.0
    # Phi(-3) = 0.00135 > 0.001: still the conditional mean
    assert gaussian_negative_margin(3.0, 1.0) == pytest.approx(
        integrated_margin(3.0, 1.0), rel=1e-5)
    assert gaussian_negative_margin(-2.0, 0.0) == -2.0


def test_margins_from_bn_per_channel():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 5.0]))
    expected = [
        integrated_margin(0.0, 1.0),
        integrated_margin(1.0, 2.0),
        integrated_margin(-1.0, 0.5), -3.0
    ]
    got = margins_from_bn(bn)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_partial_l2_mask_cases_hand_computed():
    # one channel, margin -1; (student, teacher) pairs along W
    pairs = [
        (0.5, -2.0),  # t < m: target -1, s > target: (1.5)^2 = 2.25
        (-3.0, -2.0),  # t < m, s below target -1: 0
        (0.0, -0.5),  # m < t <= 0: target t, s > t: 0.25
        (-0.7, -0.5),  # s < t <= 0: 0
        (3.0, 1.0),  # t > 0: always, 4
        (0.5, 1.0),  # t > 0, s < t: still 0.25
    ]
    s = torch.tensor([p[0] for p in pairs]).view(1, 1, 1, -1)
    t = torch.tensor([p[1] for p in pairs]).view(1, 1, 1, -1)
    loss_fn = OFDLoss(margins=[[-1.0]])
    assert loss_fn(s, t).item() == pytest.approx(6.75)
    # batchmean: a batch of two copies gives the same value
    assert loss_fn(s.repeat(2, 1, 1, 1), t.repeat(
        2, 1, 1, 1)).item() == pytest.approx(6.75)
    mean_fn = OFDLoss(margins=[[-1.0]], reduction='mean', loss_weight=2.0)
    assert mean_fn(s, t).item() == pytest.approx(2.0 * 6.75 / 6)


def test_partial_l2_matches_mdistiller_three_term_form():
    """mdistiller writes the loss as three masked terms and reduces with
    mean over the batch, sum over the rest."""
    torch.manual_seed(0)
    margin = torch.tensor([-0.5, -1.0, -0.2])
    s = torch.randn(4, 3, 5, 6)
    t = torch.randn(4, 3, 5, 6)
    m = margin.view(1, -1, 1, 1)
    ref = ((s - m)**2 * ((s > m) & (t <= m)).float() + (s - t)**2 *
           ((s > t) & (t > m) & (t <= 0)).float() + (s - t)**2 *
           (t > 0).float()).mean(dim=0).sum()
    loss = OFDLoss(margins=[margin.tolist()])(s, t)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_level_weights_and_teacher_pooled_to_student_size():
    # level i of 3 has loss value 1, weights 1/4, 1/2, 1
    ones = torch.ones(1, 1, 1, 1)
    loss_fn = OFDLoss(margins=[[-1.0]] * 3)
    s = [ones * 2, ones * 2, ones * 2]  # (2 - 1)^2 each (target t = 1)
    t = [ones, ones, ones]
    assert loss_fn(s, t).item() == pytest.approx(0.25 + 0.5 + 1.0)
    s = [ones * 2, ones * 3, ones * 4]  # 1, 4, 9
    assert loss_fn(s, t).item() == pytest.approx(0.25 + 2.0 + 9.0)
    # teacher 4x4, student 2x2: teacher averaged over 2x2 blocks
    torch.manual_seed(1)
    t = torch.rand(2, 1, 4, 4) + 0.1  # positive: plain L2 / batch
    s = torch.randn(2, 1, 2, 2)
    pooled = t.reshape(2, 1, 2, 2, 2, 2).mean(dim=(3, 5))
    ref = ((s - pooled)**2).sum() / 2
    assert OFDLoss(margins=[[-1.0]])(s, t).item() == pytest.approx(
        ref.item(), rel=1e-6)


def test_ofd_errors():
    with pytest.raises(ConfigError, match='init_from_teacher'):
        OFDLoss()(torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1))
    loss_fn = OFDLoss(margins=[[-1.0, -1.0]])
    with pytest.raises(ConfigError, match='margins do not match'):
        loss_fn(torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1))
    with pytest.raises(ConfigError, match='pair up'):
        loss_fn([torch.zeros(1, 2, 1, 1)] * 2, [torch.zeros(1, 2, 1, 1)] * 2)
    with pytest.raises(ConfigError, match='reduction'):
        OFDLoss(reduction='sum')


def build_teacher(backbone):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(classifier(backbone=backbone))
    torch.manual_seed(0)
    for m in model.modules():  # make every BN distinct
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(-2, 2)
                m.bias.normal_()
    return model


def expected_margins(model, name):
    bn = dict(model.named_modules())[name]
    return torch.tensor([
        gaussian_negative_margin(m, s)
        for m, s in zip(bn.bias.tolist(), bn.weight.tolist())
    ])


@pytest.mark.parametrize('depth', [20, 8])
def test_init_from_teacher_cifar_resnet_uses_bn2(depth):
    """The preact tap of a block takes bn2's margins (for resnet8 the block
    also has a downsample BN, which must not be used)."""
    teacher = build_teacher(dict(type='mmreviewkd.CifarResNet', depth=depth))
    last = (depth - 2) // 6 - 1
    points = [f'backbone.layer{i}.{last}.preact' for i in (1, 2, 3)]
    loss_fn = OFDLoss()
    loss_fn.init_from_teacher(teacher, points)
    bns = [f'backbone.layer{i}.{last}.bn2' for i in (1, 2, 3)]
    assert loss_fn.margin_sources == bns
    for margin, bn in zip(loss_fn.margins, bns):
        torch.testing.assert_close(margin, expected_margins(teacher, bn))


def test_init_from_teacher_cifar_wrn_point_is_the_bn():
    teacher = build_teacher(
        dict(type='mmreviewkd.CifarWRN', depth=10, widen_factor=1))
    points = ['backbone.block2.0.bn1', 'backbone.block3.0.bn1', 'backbone.bn1']
    loss_fn = OFDLoss()
    loss_fn.init_from_teacher(teacher, points)
    assert loss_fn.margin_sources == points
    assert [m.numel() for m in loss_fn.margins] == [16, 32, 64]
    for margin, bn in zip(loss_fn.margins, points):
        torch.testing.assert_close(margin, expected_margins(teacher, bn))


def test_margin_bns_override_fixed_margins_and_checkpoint_round_trip():
    teacher = build_teacher(dict(type='mmreviewkd.CifarResNet', depth=8))
    points = ['backbone.layer3.0.preact']
    loss_fn = OFDLoss(margin_bns=['backbone.layer3.0.bn1'])
    loss_fn.init_from_teacher(teacher, points)
    torch.testing.assert_close(
        loss_fn.margins[0], expected_margins(teacher,
                                             'backbone.layer3.0.bn1'))
    with pytest.raises(ConfigError, match='not a BatchNorm'):
        OFDLoss(margin_bns=['backbone.layer3.0.conv1']).init_from_teacher(
            teacher, points)
    with pytest.raises(ConfigError, match='one BN per level'):
        OFDLoss(margin_bns=[]).init_from_teacher(teacher, points)
    with pytest.raises(ConfigError, match='no module'):
        OFDLoss().init_from_teacher(teacher, ['backbone.nothing'])
    fixed = OFDLoss(margins=[[-0.5] * 64])
    fixed.init_from_teacher(teacher, points)
    assert fixed.margins[0].tolist() == [-0.5] * 64
    # the margins are buffers: saved and restored into a fresh module
    state = loss_fn.state_dict()
    assert list(state) == ['margin_0']
    fresh = OFDLoss()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.margins[0], loss_fn.margins[0])


def test_connector_structure_init_and_gradients():
    conn = OFDConnector([3, 256], [5, 256])
    assert all(c.bias is None and c.kernel_size == (1, 1) for c in conn.convs)
    assert all(
        (n.weight == 1).all() and (n.bias == 0).all() for n in conn.norms)
    # kaiming normal, fan_out, relu gain: std sqrt(2 / 256)
    std = conn.convs[1].weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    single = OFDConnector(3, 5)
    x = torch.randn(2, 3, 4, 6, requires_grad=True)
    assert single(x).shape == (2, 5, 4, 6)
    outs = conn([torch.randn(2, 3, 4, 4), torch.randn(2, 256, 2, 3)])
    assert [tuple(o.shape) for o in outs] == [(2, 5, 4, 4), (2, 256, 2, 3)]
    # student -> connector -> OFD: gradients reach student and connector
    torch.manual_seed(0)
    s = [
        torch.randn(2, 3, 4, 4, requires_grad=True),
        torch.randn(2, 256, 2, 2, requires_grad=True)
    ]
    t = [
        torch.randn(2, 5, 4, 4, requires_grad=True),
        torch.randn(2, 256, 2, 2, requires_grad=True)
    ]
    loss = OFDLoss(margins=[[-0.5] * 5, [-0.5] * 256])(conn(s), t)
    loss.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    for name, p in conn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ConfigError, match='equally long'):
        OFDConnector([3, 4], [5])
