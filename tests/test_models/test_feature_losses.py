# Copyright (c) mmreviewkd contributors. All rights reserved.
"""FitNet (+ regressor), AT, PKT and RKD against explicit loops in numpy."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmreviewkd.models.connectors.fitnet_regressor import FitNetRegressor
from mmreviewkd.models.losses.at import ATLoss
from mmreviewkd.models.losses.fitnet import FitNetLoss
from mmreviewkd.models.losses.pkt import PKTLoss
from mmreviewkd.models.losses.rkd import RKDLoss
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError


def rand(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).float()


def smooth_l1(a, b):
    """Mean smooth-L1 (beta 1) of two flat lists."""
    terms = []
    for x, y in zip(a, b):
        d = abs(x - y)
        terms.append(0.5 * d * d if d < 1 else d - 0.5)
    return sum(terms) / len(terms)


# ---------------------------------------------------------------- FitNet
@pytest.mark.parametrize('in_size,out_size,layer,stride', [
    ((8, 8), (8, 8), nn.Conv2d, (1, 1)),
    ((4, 4), (8, 8), nn.ConvTranspose2d, (2, 2)),
    ((8, 8), (4, 4), nn.Conv2d, (2, 2)),
    ((8, 6), (4, 3), nn.Conv2d, (2, 2)),
    ((4, 6), (8, 12), nn.ConvTranspose2d, (2, 2)),
    ((6, 8), (4, 5), nn.Conv2d, (1, 1)),
    ((8, 8), (2, 2), nn.Conv2d, (1, 1)),
    ((4, 4), (7, 7), nn.Conv2d, (1, 1)),
    ((8, 4), (4, 8), nn.Conv2d, (1, 1)),
])
def test_regressor_shapes(in_size, out_size, layer, stride):
    reg = FitNetRegressor(16, 32, in_size=in_size, out_size=out_size)
    assert type(reg.conv) is layer and reg.conv.stride == stride
    out = reg(rand(2, 16, *in_size))
    assert out.shape == (2, 32, *out_size)
    assert (out >= 0).all()  # ReLU


def test_regressor_rule_details():
    # kernel (1 + h - H, 1 + w - W) when the student is larger
    assert FitNetRegressor(16, 32, (6, 8), (4, 5)).conv.kernel_size == (3, 4)
    # equal sizes or no sizes: 1x1 conv, no resize
    for reg in (FitNetRegressor(16, 32), FitNetRegressor(16, 32, 8, 8)):
        assert reg.conv.kernel_size == (1, 1) and reg.resize_to is None
        assert reg(rand(2, 16, 5, 3)).shape == (2, 32, 5, 3)
    # no ratio rule applies: resize to the teacher's size, then 1x1
    reg = FitNetRegressor(16, 32, (4, 4), (7, 7))
    assert reg.resize_to == (7, 7) and reg.conv.kernel_size == (1, 1)
    assert not FitNetRegressor(16, 32, use_relu=False)(rand(4, 16, 2, 2)).ge(
        0).all()


@pytest.mark.parametrize('kwargs', [
    dict(in_channels=[16], out_channels=32),
    dict(in_channels=16, out_channels=0),
    dict(in_channels=16, out_channels=32, in_size=8),
    dict(in_channels=16, out_channels=32, in_size=(8, 0), out_size=8),
])
def test_regressor_bad_config(kwargs):
    with pytest.raises(ConfigError):
        FitNetRegressor(**kwargs)


def test_fitnet_loss_hand_computed():
    s, t = rand(2, 3, 2, 2, seed=1), rand(2, 3, 2, 2, seed=2)
    expected = np.mean((s.numpy().astype(np.float64) - t.numpy())**2)
    assert FitNetLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert FitNetLoss(loss_weight=3.0)([s, s], [t, s]).item() == \
        pytest.approx(3 * expected, rel=1e-5)
    assert FitNetLoss()(t, t).item() == 0
    with pytest.raises(ConfigError, match='FitNetRegressor'):
        FitNetLoss()(s, t[:, :, :1])


@pytest.mark.parametrize('in_size,out_size', [((8, 8), (8, 8)),
                                              ((4, 4), (8, 8)),
                                              ((8, 8), (4, 4)),
                                              ((6, 5), (3, 7))])
def test_fitnet_gradients(in_size, out_size):
    reg = FitNetRegressor(16, 32, in_size, out_size)
    x = rand(4, 16, *in_size).requires_grad_(True)
    t = rand(4, 32, *out_size, seed=3).requires_grad_(True)
    FitNetLoss()(reg(x), t).backward()
    assert x.grad.abs().sum() > 0
    for name, param in reg.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert t.grad is None


# ---------------------------------------------------------------- AT
def at_map(f):
    """Attention map (N, H*W) by explicit loops, float64."""
    n, c, h, w = f.shape
    out = np.zeros((n, h * w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y * w + x] = sum(f[i, k, y, x]**2
                                        for k in range(c)) / c
        out[i] /= math.sqrt(sum(v * v for v in out[i]))
    return out


def block_mean(f, fh, fw):
    """Average pool with a (fh, fw) window and stride, numpy."""
    n, c, h, w = f.shape
    return f.reshape(n, c, h // fh, fh, w // fw, fw).mean(axis=(3, 5))


def test_at_hand_computed_two_levels():
    s = [rand(2, 3, 4, 4, seed=1), rand(2, 5, 2, 3, seed=2)]
    t = [rand(2, 6, 4, 4, seed=3), rand(2, 4, 2, 3, seed=4)]
    expected = sum(
        np.mean((at_map(a.double().numpy()) - at_map(b.double().numpy()))**2)
        for a, b in zip(s, t))
    assert ATLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert ATLoss(loss_weight=2.0)(s[0], t[0]).item() == pytest.approx(
        2 * np.mean((at_map(s[0].double().numpy()) -
                     at_map(t[0].double().numpy()))**2),
        rel=1e-5)
    assert ATLoss()(t, t).item() == 0


def test_at_pools_the_larger_map():
    # student 4x4, teacher 2x2: the student is pooled to 2x2
    s, t = rand(2, 3, 4, 4, seed=5), rand(2, 6, 2, 2, seed=6)
    sp = block_mean(s.double().numpy(), 2, 2)
    expected = np.mean((at_map(sp) - at_map(t.double().numpy()))**2)
    assert ATLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)
    # non-square, each larger on one axis: both go to (2, 2)
    s, t = rand(2, 3, 4, 2, seed=7), rand(2, 6, 2, 4, seed=8)
    sp = block_mean(s.double().numpy(), 2, 1)
    tp = block_mean(t.double().numpy(), 1, 2)
    expected = np.mean((at_map(sp) - at_map(tp))**2)
    assert ATLoss()([s], [t]).item() == pytest.approx(expected, rel=1e-5)


def test_at_gradients_and_errors():
    s = rand(2, 3, 4, 4, seed=1).requires_grad_(True)
    t = rand(2, 6, 4, 4, seed=3).requires_grad_(True)
    ATLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ConfigError):
        ATLoss()([s, s], [t])
    with pytest.raises(ConfigError):
        ATLoss(p=0)


# ---------------------------------------------------------------- PKT
def pkt_by_hand(s, t, eps=1e-7):
    def probs(f):
        f = f.reshape(len(f), -1)
        n = len(f)
        unit = [f[i] / (math.sqrt(float(np.sum(f[i]**2))) + eps)
                for i in range(n)]
        sim = [[(float(np.dot(unit[i], unit[j])) + 1) / 2 for j in range(n)]
               for i in range(n)]
        return [[v / sum(row) for v in row] for row in sim]

    p_s, p_t = probs(s), probs(t)
    n = len(s)
    total = sum(p_t[i][j] * math.log((p_t[i][j] + eps) / (p_s[i][j] + eps))
                for i in range(n) for j in range(n))
    return total / n**2


def test_pkt_hand_computed():
    s, t = rand(4, 3, seed=1), rand(4, 5, seed=2)
    expected = pkt_by_hand(s.double().numpy(), t.double().numpy())
    assert PKTLoss()(s, t).item() == pytest.approx(expected, rel=1e-4)
    assert PKTLoss(loss_weight=10.0)(s, t).item() == pytest.approx(
        10 * expected, rel=1e-4)
    # maps are flattened
    s4, t4 = rand(3, 2, 2, 2, seed=3), rand(3, 4, 2, 1, seed=4)
    expected = pkt_by_hand(s4.double().numpy(), t4.double().numpy())
    assert PKTLoss()(s4, t4).item() == pytest.approx(expected, rel=1e-4)
    assert PKTLoss()(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_pkt_gradients_and_errors():
    s = rand(4, 3, seed=1).requires_grad_(True)
    t = rand(4, 5, seed=2).requires_grad_(True)
    PKTLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ConfigError):
        PKTLoss()(s, t[:3])


# ---------------------------------------------------------------- RKD
def rkd_by_hand(s, t):
    def dists(f):
        f = f.reshape(len(f), -1)
        n = len(f)
        d = [[0.0 if i == j else math.sqrt(float(np.sum((f[i] - f[j])**2)))
              for j in range(n)] for i in range(n)]
        pos = [v for row in d for v in row if v > 0]
        mean = sum(pos) / len(pos)
        return [v / mean for row in d for v in row]

    def angles(f):
        f = f.reshape(len(f), -1)
        n = len(f)

        def unit(v):
            norm = math.sqrt(float(np.sum(v**2)))
            return v / max(norm, 1e-12)

        return [
            float(np.dot(unit(f[j] - f[i]), unit(f[k] - f[i])))
            for i in range(n) for j in range(n) for k in range(n)
        ]

    return (25 * smooth_l1(dists(s), dists(t)) +
            50 * smooth_l1(angles(s), angles(t)))


def test_rkd_hand_computed():
    s, t = rand(4, 3, seed=1), rand(4, 5, seed=2)
    expected = rkd_by_hand(s.double().numpy(), t.double().numpy())
    assert RKDLoss()(s, t).item() == pytest.approx(expected, rel=1e-4)
    assert RKDLoss(loss_weight=0.5)(s, t).item() == pytest.approx(
        0.5 * expected, rel=1e-4)
    s4, t4 = rand(3, 2, 2, 2, seed=3), 3 * rand(3, 4, 1, 2, seed=4)
    expected = rkd_by_hand(s4.double().numpy(), t4.double().numpy())
    assert RKDLoss()(s4, t4).item() == pytest.approx(expected, rel=1e-4)


def test_rkd_terms_and_invariances():
    s, t = rand(5, 3, seed=1), rand(5, 4, seed=2)
    d = RKDLoss(distance_weight=1.0, angle_weight=0.0)(s, t)
    a = RKDLoss(distance_weight=0.0, angle_weight=1.0)(s, t)
    assert RKDLoss()(s, t).item() == pytest.approx(
        25 * d.item() + 50 * a.item(), rel=1e-5)
    assert d.item() > 0 and a.item() > 0
    # distances are normalised and angles scale-free: a scaled copy is 0
    assert RKDLoss()(s, 3 * s).item() == pytest.approx(0.0, abs=1e-5)
    assert RKDLoss()(s[:1], t[:1]).item() == 0


def test_rkd_gradients():
    s = rand(4, 3, seed=1).requires_grad_(True)
    t = rand(4, 5, seed=2).requires_grad_(True)
    RKDLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


# ---------------------------------------------------------------- registry
@pytest.mark.parametrize('cfg,cls', [
    (dict(type='mmreviewkd.FitNetLoss'), FitNetLoss),
    (dict(type='mmreviewkd.FitNetRegressor', in_channels=16, out_channels=32,
          in_size=8, out_size=4), FitNetRegressor),
    (dict(type='mmreviewkd.ATLoss', loss_weight=2.0), ATLoss),
    (dict(type='mmreviewkd.PKTLoss'), PKTLoss),
    (dict(type='mmreviewkd.RKDLoss'), RKDLoss),
])
def test_registry_builds(cfg, cls):
    assert isinstance(MODELS.build(cfg), cls)


@pytest.mark.parametrize('cfg', [
    dict(type='mmreviewkd.FitNetLoss', loss_weight=-1),
    dict(type='mmreviewkd.ATLoss', loss_weight='1'),
    dict(type='mmreviewkd.PKTLoss', eps=0),
    dict(type='mmreviewkd.RKDLoss', angle_weight=float('inf')),
])
def test_bad_numbers_raise(cfg):
    with pytest.raises(ConfigError):
        MODELS.build(cfg)
