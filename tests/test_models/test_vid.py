# Copyright (c) mmreviewkd contributors. All rights reserved.
"""VIDLoss against the Gaussian likelihood written out by hand."""
import math

import pytest
import torch

from mmreviewkd.models.losses.vid import VIDLoss
from mmreviewkd.utils.errors import ConfigError


def explicit_vid(weights, log_scale, s, t, eps=1e-5):
    """The regressor as per-pixel matrix products, the softplus variance and
    the NLL, all written out in float64."""
    w1, w2, w3 = (w.detach().double()[:, :, 0, 0] for w in weights)
    x = s.detach().double().permute(0, 2, 3, 1)  # N, H, W, C
    h = torch.clamp(x @ w1.T, min=0)
    h = torch.clamp(h @ w2.T, min=0)
    mu = h @ w3.T
    var = torch.log(1 + torch.exp(log_scale.detach().double())) + eps
    tt = t.detach().double().permute(0, 2, 3, 1)
    return (0.5 * (torch.log(var) + (mu - tt)**2 / var)).mean().item()


def block_mean(x, fh, fw):
    """Average of non-overlapping fh x fw blocks, by reshaping."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // fh, fh, w // fw, fw).mean(dim=(3, 5))


def test_vid_initial_variance_and_zero_regressor_closed_form():
    loss_fn = VIDLoss(2, 3, init_pred_var=5.0)
    var = loss_fn.variance(0)
    torch.testing.assert_close(var, torch.full((3, ), 5.0))
    for p in loss_fn.regressors.parameters():
        torch.nn.init.zeros_(p)
    s = torch.randn(2, 2, 3, 3)
    t = torch.full((2, 3, 3, 3), 2.0)
    # mu = 0: 0.5 * (log 5 + 2^2 / 5)
    assert loss_fn(s, t).item() == pytest.approx(
        0.5 * (math.log(5.0) + 4.0 / 5.0), rel=1e-6)


def test_vid_regressor_is_conv_relu_conv_relu_conv_without_bias():
    loss_fn = VIDLoss(4, 6, mid_channels=5)
    reg = loss_fn.regressors[0]
    kinds = [type(m).__name__ for m in reg]
    assert kinds == ['Conv2d', 'ReLU', 'Conv2d', 'ReLU', 'Conv2d']
    assert [tuple(m.weight.shape[:2]) for m in reg[::2]] == [(5, 4), (5, 5),
                                                             (6, 5)]
    assert all(m.bias is None for m in reg[::2])
    # mid defaults to out, as RepDistiller's VIDLoss(s, t, t)
    reg = VIDLoss(4, 6).regressors[0]
    assert reg[0].out_channels == 6 and reg[2].out_channels == 6


def test_vid_matches_explicit_formula_random_weights_and_scales():
    torch.manual_seed(0)
    loss_fn = VIDLoss(3, 4, mid_channels=5, loss_weight=0.7)
    with torch.no_grad():
        loss_fn.log_scales[0].copy_(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
    s = torch.randn(2, 3, 4, 5)
    t = torch.randn(2, 4, 4, 5)
    ref = explicit_vid([loss_fn.regressors[0][i].weight for i in (0, 2, 4)],
                       loss_fn.log_scales[0], s, t)
    assert loss_fn(s, t).item() == pytest.approx(0.7 * ref, rel=1e-5)


@pytest.mark.parametrize('s_size,t_size', [((8, 8), (4, 4)),
                                           ((2, 2), (4, 4)),
                                           ((4, 6), (2, 3)),
                                           ((4, 3), (2, 6))])
def test_vid_pools_the_larger_map_multi_level(s_size, t_size):
    torch.manual_seed(1)
    loss_fn = VIDLoss([3, 2], [4, 5])
    s = [torch.randn(2, 3, *s_size), torch.randn(2, 2, 2, 2)]
    t = [torch.randn(2, 4, *t_size), torch.randn(2, 5, 2, 2)]
    size = (min(s_size[0], t_size[0]), min(s_size[1], t_size[1]))
    s0 = block_mean(s[0], s_size[0] // size[0], s_size[1] // size[1])
    t0 = block_mean(t[0], t_size[0] // size[0], t_size[1] // size[1])
    ref = sum(
        explicit_vid([loss_fn.regressors[i][j].weight for j in (0, 2, 4)],
                     loss_fn.log_scales[i], si, ti)
        for i, (si, ti) in enumerate([(s0, t0), (s[1], t[1])]))
    assert loss_fn(s, t).item() == pytest.approx(ref, rel=1e-5)


def test_vid_gradients_reach_student_and_parameters_not_teacher():
    torch.manual_seed(2)
    loss_fn = VIDLoss([3, 2], [4, 5])
    s = [torch.randn(2, 3, 4, 4, requires_grad=True),
         torch.randn(2, 2, 2, 2, requires_grad=True)]
    t = [torch.randn(2, 4, 4, 4, requires_grad=True),
         torch.randn(2, 5, 2, 2, requires_grad=True)]
    loss_fn(s, t).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    for name, p in loss_fn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_vid_config_errors():
    with pytest.raises(ConfigError, match='one entry per level'):
        VIDLoss([3, 2], [4])
    with pytest.raises(ConfigError, match='init_pred_var'):
        VIDLoss(3, 4, init_pred_var=0.0)
    loss_fn = VIDLoss([3, 2], [4, 5])
    with pytest.raises(ConfigError, match='pair up'):
        loss_fn([torch.randn(1, 3, 2, 2)], [torch.randn(1, 4, 2, 2)])
