# Copyright (c) mmreviewkd contributors. All rights reserved.
import math

import pytest
import torch
import torch.nn.functional as F

from mmreviewkd.models import ABF, ABFConnector


def test_abf_structure_and_init():
    abf = ABF(16, 64, 32, fuse=True)
    assert abf.conv1.kernel_size == (1, 1) and abf.conv1.bias is None
    assert abf.conv2.kernel_size == (3, 3) and abf.conv2.bias is None
    assert abf.conv2.padding == (1, 1)
    assert abf.att_conv.in_channels == 128 and abf.att_conv.out_channels == 2
    assert abf.att_conv.bias is not None
    assert ABF(16, 64, 32, fuse=False).att_conv is None
    # kaiming_uniform_(a=1): U(-b, b) with b = sqrt(3 / fan_in)
    for conv, fan_in in ((abf.conv1, 16), (abf.conv2, 64 * 9)):
        bound = math.sqrt(3.0 / fan_in)
        w = conv.weight.detach()
        assert w.abs().max() <= bound + 1e-6
        assert w.abs().max() > 0.9 * bound  # uniform fills the range
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_abf_fusion_formula():
    torch.manual_seed(0)
    abf = ABF(4, 6, 5, fuse=True).eval()
    # sigmoid(att) known: weights 0, biases (b0, b1)
    torch.nn.init.zeros_(abf.att_conv.weight)
    abf.att_conv.bias.data = torch.tensor([0.0, math.log(3.0)])  # .5, .75
    x = torch.randn(2, 4, 8, 6)
    residual = torch.randn(2, 6, 4, 3)
    out, fused = abf(x, residual)
    x1 = abf.norm1(abf.conv1(x))
    up = F.interpolate(residual, size=(8, 6), mode='nearest')
    expected = 0.5 * x1 + 0.75 * up
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(out, abf.norm2(abf.conv2(expected)))
    assert out.shape == (2, 5, 8, 6)


def test_abf_resizes_to_teacher_size():
    abf = ABF(4, 6, 5, fuse=False).eval()
    x = torch.randn(2, 4, 4, 4)
    out, fused = abf(x, out_size=(8, 8))
    assert out.shape == (2, 5, 8, 8) and fused.shape == (2, 6, 8, 8)
    x1 = abf.norm1(abf.conv1(x))
    torch.testing.assert_close(
        fused, F.interpolate(x1, size=(8, 8), mode='nearest'))


def test_abf_fuse_needs_residual():
    with pytest.raises(ValueError, match='residual'):
        ABF(4, 6, 5, fuse=True)(torch.randn(1, 4, 2, 2))


def test_connector_defaults_and_shapes_homogeneous():
    conn = ABFConnector([16, 32, 64, 64], [16, 32, 64, 64])
    assert conn.mid_channels == 64
    assert [a.fuse for a in conn.abfs] == [True, True, True, False]
    feats = [
        torch.randn(2, 16, 32, 32),
        torch.randn(2, 32, 16, 16),
        torch.randn(2, 64, 8, 8),
        torch.randn(2, 64, 1, 1)
    ]
    outs = conn(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 32), (2, 32, 16, 16),
                                              (2, 64, 8, 8), (2, 64, 1, 1)]
    assert ABFConnector([960, 1280], [8, 8]).mid_channels == 512


def test_connector_residual_chain_runs_deep_to_shallow():
    torch.manual_seed(0)
    conn = ABFConnector([4, 8, 8], [4, 8, 8]).eval()
    feats = [
        torch.randn(1, 4, 8, 8, requires_grad=True),
        torch.randn(1, 8, 4, 4, requires_grad=True),
        torch.randn(1, 8, 1, 1, requires_grad=True)
    ]
    outs = conn(feats)
    # the deepest output sees only the deepest feature
    g = torch.autograd.grad(
        outs[2].sum(), feats, allow_unused=True, retain_graph=True)
    assert g[0] is None and g[1] is None and g[2].abs().sum() > 0
    # the middle output sees levels 1 and 2, not 0
    g = torch.autograd.grad(
        outs[1].sum(), feats, allow_unused=True, retain_graph=True)
    assert g[0] is None and g[1].abs().sum() > 0 and g[2].abs().sum() > 0
    # the shallowest output sees all levels (review)
    g = torch.autograd.grad(
        outs[0].sum(), feats, allow_unused=True, retain_graph=True)
    assert all(x is not None and x.abs().sum() > 0 for x in g)
    # and equals a manual chain
    o2, r = conn.abfs[2](feats[2])
    o1, r = conn.abfs[1](feats[1], r)
    o0, _ = conn.abfs[0](feats[0], r)
    for a, b in zip(outs, (o0, o1, o2)):
        torch.testing.assert_close(a, b)


def test_connector_heterogeneous_shufflenet_like():
    # student maps half the teacher's size (ShuffleNet student, ResNet teacher)
    conn = ABFConnector([240, 480, 960, 960], [64, 128, 256, 256])
    assert conn.mid_channels == 512
    feats = [
        torch.randn(2, 240, 16, 16),
        torch.randn(2, 480, 8, 8),
        torch.randn(2, 960, 4, 4),
        torch.randn(2, 960, 1, 1)
    ]
    sizes = [(32, 32), (16, 16), (8, 8), (1, 1)]
    outs = conn(feats, sizes)
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 128, 16, 16),
                                              (2, 256, 8, 8), (2, 256, 1, 1)]


def test_connector_non_square_inputs():
    conn = ABFConnector([8, 16, 16], [4, 8, 8])
    feats = [
        torch.randn(2, 8, 12, 20),
        torch.randn(2, 16, 6, 10),
        torch.randn(2, 16, 1, 1)
    ]
    outs = conn(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 12, 20), (2, 8, 6, 10),
                                              (2, 8, 1, 1)]


def test_connector_errors():
    with pytest.raises(ValueError, match='equal length'):
        ABFConnector([4, 8], [4])
    conn = ABFConnector([4, 8], [4, 8])
    with pytest.raises(ValueError, match='level 0 expects'):
        conn([torch.randn(1, 5, 4, 4), torch.randn(1, 8, 2, 2)])
    with pytest.raises(ValueError, match='built for 2 levels'):
        conn([torch.randn(1, 4, 4, 4)])


def _reference_abf(abf, x, residual, out_size=None):
    """The original ABF forward: concatenation and an explicit resize."""
    x = abf.norm1(abf.conv1(x))
    if abf.fuse:
        residual = F.interpolate(residual, size=x.shape[-2:], mode='nearest')
        att = torch.sigmoid(abf.att_conv(torch.cat([x, residual], 1)))
        x = x * att[:, 0:1] + residual * att[:, 1:2]
    if out_size is not None and tuple(out_size) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=out_size, mode='nearest')
    return abf.norm2(abf.conv2(x)), x


@pytest.mark.parametrize('x_size,r_size', [((8, 8), (4, 4)), ((8, 6), (1, 1)),
                                           ((8, 8), (8, 8)), ((7, 5), (3, 2)),
                                           ((12, 8), (4, 2))])
def test_abf_matches_the_original_formula(x_size, r_size):
    """Random attention weights: the fusion without concatenation (the
    residual's half of att_conv at the residual's resolution) equals the
    authors' formula, values and gradients of every input and parameter."""
    torch.manual_seed(0)
    abf = ABF(4, 6, 5, fuse=True).train()
    torch.nn.init.normal_(abf.att_conv.weight)
    torch.nn.init.normal_(abf.att_conv.bias)
    x = torch.randn(2, 4, *x_size, requires_grad=True)
    residual = torch.randn(2, 6, *r_size, requires_grad=True)
    out, fused = abf(x, residual)
    ref_out, ref_fused = _reference_abf(abf, x, residual)
    torch.testing.assert_close(fused, ref_fused)
    torch.testing.assert_close(out, ref_out)
    wrt = [x, residual, abf.att_conv.weight, abf.att_conv.bias,
           abf.conv1.weight, abf.norm1.weight]
    grads = torch.autograd.grad((out.sum() + fused.square().sum()), wrt)
    ref_grads = torch.autograd.grad(
        (ref_out.sum() + ref_fused.square().sum()), wrt)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)


def test_abf_under_autocast_matches_fp32():
    """One code path: under bf16 autocast the chain runs and stays close to
    the fp32 result."""
    torch.manual_seed(0)
    conn = ABFConnector([2, 4], [3, 5]).train()
    feats = [torch.randn(2, 2, 8, 8), torch.randn(2, 4, 4, 4)]
    ref = conn(feats)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = conn(feats)
    for o, r in zip(outs, ref):
        assert torch.isfinite(o.float()).all()
        torch.testing.assert_close(o.float(), r, rtol=0.05, atol=0.05)


def test_connector_rejects_non_positive_mid_channels():
    for bad in (0, -4, 2.5):
        with pytest.raises(ValueError, match='mid_channels must be a '
                           'positive integer'):
            ABFConnector([4, 8], [4, 8], mid_channels=bad)
