# Copyright (c) mmreviewkd contributors. All rights reserved.
"""VID, OFD (+ connector) and CRD as distill terms of ReviewKDDistiller:
channel inference, OFD margins from the real teacher, one training step,
gradients, memory bank and checkpointed state."""
import torch
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from helpers.models import PREPROCESSOR, classifier
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.connectors.ofd_connector import OFDConnector  # noqa
from mmreviewkd.models.losses.crd import CRDLoss  # noqa
from mmreviewkd.models.losses.ofd import OFDLoss, margins_from_bn
from mmreviewkd.models.losses.vid import VIDLoss  # noqa

TERMS = dict(
    vid=dict(loss=dict(type='VIDLoss'), inputs='stages'),
    ofd=dict(
        loss=dict(type='OFDLoss'),
        connector=dict(type='OFDConnector'),
        inputs='stages',
        loss_weight=0.001),
    crd=dict(
        loss=dict(type='CRDLoss', num_data=16, num_negatives=32),
        inputs='pooled',
        loss_weight=0.8))


def test_terms_in_the_distiller_one_step():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(
            student=classifier(8),
            teacher=classifier(14),
            data_preprocessor=PREPROCESSOR,
            teacher_feats=dict(preact=True),
            distill_terms=TERMS,
            connector=None)
    model.train()
    terms = model.distill_terms
    # channels filled in from the student / teacher inputs
    assert [r[0].in_channels for r in terms['vid'].loss.regressors] == [
        16, 32, 64
    ]
    assert terms['crd'].loss.embed_t.in_features == 64
    # margins from bn2 of the teacher's last block per stage
    ofd: OFDLoss = terms['ofd'].loss
    bns = [f'backbone.layer{i}.1.bn2' for i in (1, 2, 3)]
    assert ofd.margin_sources == bns
    modules = dict(model.teacher.named_modules())
    for margin, bn in zip(ofd.margins, bns):
        torch.testing.assert_close(margin, margins_from_bn(modules[bn]))

    torch.manual_seed(0)
    inputs = torch.randn(4, 3, 32, 32)
    samples = [
        DataSample(metainfo=dict(sample_idx=i + 3)).set_gt_label(i % 10)
        for i in range(4)
    ]
    losses = model.loss(inputs, samples)
    for name in ('loss_vid', 'loss_ofd', 'loss_crd'):
        assert torch.isfinite(losses[name]) and losses[name].item() != 0
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    for name, p in terms.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.teacher.parameters())
    memory = terms['crd'].loss.memory
    assert memory.labels[3:7].tolist() == [0, 1, 2, 3]
    assert (memory.z > 0).all()
    state = model.state_dict()
    for key in ('ofd.loss.margin_2', 'crd.loss.memory.memory_s',
                'crd.loss.memory.labels', 'crd.loss.memory.z'):
        assert f'distill_terms.{key}' in state
