# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The paper's ablations as options: RM without RLF (one adapter per
review pair), RLF with a plain-sum fusion, HCL -> L2, and the review-matrix
mode (one student stage against one teacher stage)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from helpers.models import PREPROCESSOR, classifier
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.connectors import (ABF, ABFConnector,
                                          ReviewPairsConnector)
from mmreviewkd.models.losses import HCLLoss
from mmreviewkd.utils.errors import ConfigError

CH = [16, 32, 64, 64]


def feats(n=2, channels=CH, sizes=(32, 16, 8, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, c, s, s, generator=g)
        for c, s in zip(channels, sizes)
    ]


def test_review_mechanism_builds_one_adapter_per_lower_triangular_pair():
    conn = ReviewPairsConnector(CH, [8, 16, 32, 48], pairs='review')
    assert conn.pairs == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2),
                          (3, 0), (3, 1), (3, 2), (3, 3)]
    assert len(conn.adapters) == 10 == len(conn.teacher_levels)
    for adapter, (i, j) in zip(conn.adapters, conn.pairs):
        assert isinstance(adapter, ABF) and not adapter.fuse
        assert adapter.in_channels == CH[i]
        assert adapter.out_channels == [8, 16, 32, 48][j]
    sizes = [(32, 32), (16, 16), (8, 8), (1, 1)]
    outs = conn(feats(), sizes)
    for out, (i, j) in zip(outs, conn.pairs):
        assert out.shape == (2, [8, 16, 32, 48][j], *sizes[j])


def test_review_pairs_do_not_fuse_each_output_depends_on_its_level_only():
    conn = ReviewPairsConnector(CH, CH, pairs='review')
    x = [f.requires_grad_() for f in feats()]
    outs = conn(x, [f.shape[-2:] for f in x])
    for k, (i, _) in enumerate(conn.pairs):
        # a random projection: the sum of a BN output has no gradient
        probe = (outs[k] * torch.randn_like(outs[k])).sum()
        grads = torch.autograd.grad(
            probe, x, retain_graph=True, allow_unused=True)
        for level, g in enumerate(grads):
            assert (g is not None and g.abs().sum() > 0) == (level == i)


@pytest.mark.parametrize('pairs,match', [('all', 'must be "review"'),
                                         ([(4, 0)], 'out of range'),
                                         ([(1, 2, 3)], 'must be "review"')])
def test_review_pairs_reject_bad_pairs(pairs, match):
    with pytest.raises(ConfigError, match=match):
        ReviewPairsConnector(CH, CH, pairs=pairs)


def test_sum_fusion_has_no_attention_and_adds_the_resized_residual():
    conn = ABFConnector(CH, CH, fusion='sum')
    assert all(abf.att_conv is None for abf in conn.abfs)
    assert not any('att_conv' in n for n, _ in conn.named_parameters())
    conn.eval()
    x = feats()
    outs = conn(x)
    # recompute the chain by hand: x'_i = BN(conv1(x_i)) + up(x'_{i+1})
    residual = None
    expected = [None] * 4
    for i in range(3, -1, -1):
        abf = conn.abfs[i]
        y = abf.norm1(abf.conv1(x[i]))
        if residual is not None:
            y = y + F.interpolate(residual, size=y.shape[-2:], mode='nearest')
        expected[i] = abf.norm2(abf.conv2(y))
        residual = y
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp)
    with pytest.raises(ConfigError, match='fusion'):
        ABFConnector(CH, CH, fusion='max')


def test_attention_maps_are_recorded_on_request():
    conn = ABFConnector(CH, CH)
    conn(feats())
    assert all(abf.attention is None for abf in conn.abfs)
    conn.record_attention(True)
    conn(feats())
    for i, abf in enumerate(conn.abfs):
        if i == 3:
            assert abf.attention is None  # the deepest level does not fuse
        else:
            assert abf.attention.shape == (2, 2, *feats()[i].shape[-2:])
            assert 0 < abf.attention.min() and abf.attention.max() < 1


def test_hcl_without_pooling_is_plain_l2():
    s, t = feats(seed=1), feats(seed=2)
    loss = HCLLoss(pool_sizes=())(s, t)
    torch.testing.assert_close(
        loss, sum(F.mse_loss(a, b) for a, b in zip(s, t)))


def build(**kwargs):
    cfg = dict(
        student=classifier(8),
        teacher=classifier(14),
        data_preprocessor=PREPROCESSOR,
        distill_loss=dict(type='HCLLoss', pool_sizes=()))
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(**cfg)
    model.train()
    return model


def test_review_matrix_mode_touches_only_the_chosen_pair():
    MessageHub.get_current_instance().update_info('epoch', 0)
    model = build(
        connector=dict(type='ReviewPairsConnector', pairs=[(1, 0)]))
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    seen = []
    model.distill_loss.register_forward_hook(
        lambda m, args, out: seen.append(args))
    losses = model.loss(inputs, samples)
    outs, targets = seen[0][:2]
    # one output: student stage 2 mapped to teacher stage 1's shape
    assert len(outs) == 1 and outs[0].shape == targets[0].shape
    assert targets[0].shape == (4, 64 // 4, 32, 32)
    torch.testing.assert_close(
        losses['loss_hcl'], F.mse_loss(outs[0], targets[0]) * 1.0)
    losses['loss_hcl'].backward()
    backbone = model.student.backbone
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in backbone.layer2.parameters())
    for part in (backbone.layer3, model.student.head):
        assert all(p.grad is None or p.grad.abs().sum() == 0
                   for p in part.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert list(losses) == ['student.loss', 'loss_hcl.0', 'loss_hcl',
                            'distill_weight']
