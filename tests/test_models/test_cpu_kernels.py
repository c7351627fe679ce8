# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The C++ CPU kernels of the ABF chain and their PyTorch-op equivalents.

Every fast path must give the values and gradients of the plain PyTorch
formulation: the attention fusion (C++ kernel and the PyTorch-op version
used on CUDA), the batch norm with fast statistics, the channels-last chain
and the nested-pyramid HCL.
"""
import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.models import ABFConnector, HCLLoss
from mmreviewkd.models.connectors import attention_fusion as af
from mmreviewkd.models.connectors import cpu_kernels
from mmreviewkd.models.connectors.batch_norm import (batch_norm_applies,
                                                     batch_norm_train)
from mmreviewkd.models.losses import hcl as hcl_module

CL = torch.channels_last

needs_kernels = pytest.mark.skipif(
    not cpu_kernels.cpu_kernels_available(),
    reason='the C++ CPU kernels are switched off or could not be built')

IMPLS = {
    'cpu_kernel': af._AttentionFusionCPU.apply,
    'torch_ops': af._AttentionFusion.apply,
}


def _fusion_reference(x, r, weight, bias):
    r = F.interpolate(r, size=x.shape[-2:], mode='nearest')
    att = torch.sigmoid(F.conv2d(torch.cat([x, r], 1), weight, bias))
    return x * att[:, 0:1] + r * att[:, 1:2]


def _inputs(n, m, x_size, r_size, dtype=torch.float64, layout=None):
    x = torch.randn(n, m, *x_size, dtype=dtype)
    r = torch.randn(n, m, *r_size, dtype=dtype)
    if layout is not None:
        x, r = x.contiguous(memory_format=layout), r.contiguous(
            memory_format=layout)
    weight = torch.randn(2, 2 * m, 1, 1, dtype=dtype)
    bias = torch.randn(2, dtype=dtype)
    return [t.requires_grad_() for t in (x, r, weight, bias)]


@needs_kernels
@pytest.mark.parametrize('impl', sorted(IMPLS))
@pytest.mark.parametrize('layout', [torch.contiguous_format, CL])
@pytest.mark.parametrize(
    'shape', [(2, 3, (8, 8), (4, 4)), (2, 5, (8, 6), (1, 1)),
              (3, 4, (6, 6), (6, 6)), (2, 3, (12, 8), (4, 2)),
              (3, 16, (64, 40), (32, 20))])  # last: many work units
def test_fusion_matches_the_formula(impl, layout, shape):
    """Values and the gradients of all four inputs (float64)."""
    torch.manual_seed(0)
    inputs = _inputs(*shape, layout=layout)
    out = IMPLS[impl](*inputs)
    ref = _fusion_reference(*inputs)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, inputs, g)
    ref_grads = torch.autograd.grad(ref, inputs, g)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


@needs_kernels
@pytest.mark.parametrize('impl', sorted(IMPLS))
@pytest.mark.parametrize('with_bias', [True, False])
def test_fusion_gradcheck(impl, with_bias):
    torch.manual_seed(0)
    x, r, weight, bias = _inputs(2, 3, (4, 6), (2, 3))
    bias = bias if with_bias else None
    assert torch.autograd.gradcheck(IMPLS[impl], (x, r, weight, bias))


@needs_kernels
def test_fusion_kernel_float32_and_thread_count():
    """float32 agrees with float64; the result does not depend on the
    number of threads (fixed work units, fixed reduction order)."""
    torch.manual_seed(0)
    inputs = _inputs(4, 8, (16, 16), (8, 8), dtype=torch.float32)
    g = torch.randn(4, 8, 16, 16)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = af._AttentionFusionCPU.apply(*inputs)
            results.append([out] + list(torch.autograd.grad(out, inputs, g)))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)
    ref = _fusion_reference(*[t.detach().double().requires_grad_()
                              for t in inputs])
    torch.testing.assert_close(results[0][0].double(), ref, rtol=1e-5,
                               atol=1e-5)


def _bn_pair(c, dtype, **kwargs):
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(c, **kwargs).to(dtype).train()
    if bn.affine:
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -1, 1)
    return bn, copy.deepcopy(bn)


@needs_kernels
@pytest.mark.parametrize('kwargs', [
    dict(), dict(momentum=None), dict(affine=False),
    dict(track_running_stats=False), dict(eps=1e-3, momentum=0.3)
])
@pytest.mark.parametrize('layout', [torch.contiguous_format, CL])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_batch_norm_train_matches_the_module(kwargs, layout, dtype):
    """Output, gradients of input, weight and bias, and the running
    statistics over two steps (cumulative average included)."""
    ref_bn, bn = _bn_pair(6, dtype, **kwargs)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for step in range(2):
        x = (torch.randn(5, 6, 7, 3, dtype=dtype) * 3 + 5 * step).contiguous(
            memory_format=layout).requires_grad_()
        assert batch_norm_applies(bn, x)
        g = torch.randn(5, 6, 7, 3, dtype=dtype)
        out = batch_norm_train(x, bn)
        ref = ref_bn(x)
        torch.testing.assert_close(out, ref, **tol)
        wrt = [x] + ([bn.weight, bn.bias] if bn.affine else [])
        ref_wrt = [x] + ([ref_bn.weight, ref_bn.bias] if bn.affine else [])
        for got, want in zip(torch.autograd.grad(out, wrt, g),
                             torch.autograd.grad(ref, ref_wrt, g)):
            torch.testing.assert_close(got, want, **tol)
        if bn.track_running_stats:
            torch.testing.assert_close(bn.running_mean, ref_bn.running_mean,
                                       **tol)
            torch.testing.assert_close(bn.running_var, ref_bn.running_var,
                                       **tol)
            assert int(bn.num_batches_tracked) == step + 1


@needs_kernels
def test_batch_norm_applies_only_where_it_should():
    x = torch.randn(4, 3, 5, 5)
    bn = nn.BatchNorm2d(3).train()
    assert batch_norm_applies(bn, x)
    assert not batch_norm_applies(bn.eval(), x)  # eval: the layer itself
    bn.train()
    assert not batch_norm_applies(nn.SyncBatchNorm(3).train(), x)
    assert not batch_norm_applies(nn.GroupNorm(1, 3), x)
    assert not batch_norm_applies(bn, x.half())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not batch_norm_applies(bn, x)
    # one value per channel: the module raises its own error
    single = torch.randn(1, 3, 1, 1)
    assert not batch_norm_applies(bn, single)
    with pytest.raises(ValueError, match='more than 1 value per channel'):
        bn(single)


def _chain(monkeypatch, kernels):
    """ABF chain + HCL outputs and gradients, with or without kernels."""
    if not kernels:
        monkeypatch.setenv(cpu_kernels.CPU_KERNELS_ENV, '0')
    else:
        monkeypatch.delenv(cpu_kernels.CPU_KERNELS_ENV, raising=False)
    torch.manual_seed(0)
    shapes = [(4, 16, 16), (8, 8, 8), (8, 4, 4), (8, 1, 1)]
    conn = ABFConnector([c for c, _, _ in shapes], [5, 6, 7, 8]).double()
    for m in conn.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.normal_(m.weight)
    feats = [
        torch.randn(3, c, h, w, dtype=torch.float64, requires_grad=True)
        for c, h, w in shapes
    ]
    teacher = [torch.randn(3, c, h, h, dtype=torch.float64)
               for c, (_, h, _) in zip([5, 6, 7, 8], shapes)]
    assert cpu_kernels.channels_last_applies(feats) is kernels
    outs = conn(feats)
    loss = HCLLoss()(outs, teacher)
    # the student's other uses of its features (NCHW) add to the gradient
    total = loss + sum((f * f).sum() for f in feats) * 1e-3
    grads = torch.autograd.grad(total, feats + list(conn.parameters()))
    return outs, loss, grads, conn


@needs_kernels
def test_channels_last_chain_matches_the_plain_chain(monkeypatch):
    outs, loss, grads, conn = _chain(monkeypatch, kernels=True)
    ref_outs, ref_loss, ref_grads, ref_conn = _chain(monkeypatch, False)
    assert outs[0].is_contiguous(memory_format=CL)  # ran channels-last
    assert ref_outs[0].is_contiguous()
    for got, want in zip(outs, ref_outs):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(loss, ref_loss)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
    # student feature gradients come back in the features' own layout
    assert all(g.is_contiguous() for g in grads[:4])
    for a, b in zip(conn.buffers(), ref_conn.buffers()):
        torch.testing.assert_close(a, b)  # running statistics


def test_kernels_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(cpu_kernels.CPU_KERNELS_ENV, '0')
    assert not cpu_kernels.cpu_kernels_available()
    assert not cpu_kernels.channels_last_applies([torch.randn(1, 2, 3, 3)])
    assert not batch_norm_applies(nn.BatchNorm2d(2), torch.randn(2, 2, 3, 3))


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    """No compiler (or ninja): one warning naming the fix, then PyTorch ops."""
    import torch.utils.cpp_extension as cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError('Ninja is required to load C++ extensions')

    monkeypatch.setitem(cpu_kernels._state, 'loaded', None)
    monkeypatch.setattr(cpu_kernels, '_registered', lambda: False)
    monkeypatch.setattr(cpp_extension, 'load', no_compiler)
    monkeypatch.delenv(cpu_kernels.CPU_KERNELS_ENV, raising=False)
    with pytest.warns(UserWarning, match='MMREVIEWKD_CPU_KERNELS=0'):
        assert not cpu_kernels.cpu_kernels_available()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not cpu_kernels.cpu_kernels_available()  # no second warning
        x, r, weight, bias = _inputs(1, 2, (4, 4), (2, 2))
        torch.testing.assert_close(
            af.attention_fusion(x, r, weight, bias),
            _fusion_reference(x, r, weight, bias))


@pytest.mark.parametrize('layout', [torch.contiguous_format, CL])
@pytest.mark.parametrize('size', [(32, 32), (16, 8), (8, 8), (4, 4), (2, 2),
                                  (1, 1), (12, 12)])
def test_nested_hcl_matches_the_pooled_formula(layout, size):
    """The one-pass backward of the nested pyramid against autograd through
    the pooled formula (float64), for student and teacher gradients."""
    torch.manual_seed(0)
    s = torch.randn(2, 3, *size, dtype=torch.float64).contiguous(
        memory_format=layout).requires_grad_()
    t = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    sizes = [p for p in (4, 2, 1) if p < size[0]]
    weights = [0.5**k for k in range(1, len(sizes) + 1)]
    assert hcl_module._nested_pyramid(s, sizes)
    loss = hcl_module._NestedHCL.apply(s, t, sizes, weights)
    d = s - t
    ref = d.square().mean() + sum(
        w * F.adaptive_avg_pool2d(d, p).square().mean()
        for p, w in zip(sizes, weights))
    ref = ref / (1 + sum(weights))
    torch.testing.assert_close(loss, ref)
    for got, want in zip(torch.autograd.grad(loss * 3, [s, t]),
                         torch.autograd.grad(ref * 3, [s, t])):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(
        lambda a, b: hcl_module._NestedHCL.apply(a, b, sizes, weights),
        (s, t))


@pytest.mark.skipif(
    not cpu_kernels.cpu_kernels_enabled(),
    reason='MMREVIEWKD_CPU_KERNELS=0 switches the kernels off')
def test_cpu_kernels_are_built():
    """The suite's machines have a C++ compiler and ninja: a kernel build
    that fails must fail the suite, not skip the tests above."""
    assert cpu_kernels.cpu_kernels_available()
