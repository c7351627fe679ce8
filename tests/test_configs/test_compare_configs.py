# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The compared methods' and the ablations' configs: each builds, states its
method's published settings and runs one loss step; the plans name
existing configs."""
import glob
import os.path as osp
import runpy

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from mmreviewkd.models.connectors import ABFConnector, ReviewPairsConnector
from mmreviewkd.models.distillers import ReviewKDDistiller
from mmreviewkd.utils.config_check import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAIRS6 = ['resnet56_resnet20', 'resnet110_resnet32', 'resnet32x4_resnet8x4',
          'wrn40-2_wrn16-2', 'wrn40-2_wrn40-1', 'vgg13_vgg8']
PAIRS2 = ['resnet56_resnet20', 'resnet32x4_resnet8x4']
# method: (loss type, inputs, term weight, warm-up, task weight, ReviewKD
# term kept, pre-activation features)
METHODS = {
    'kd': ('KDLoss', 'logits', 0.9, 0, 0.1, False, None),
    'dkd': ('DKDLoss', 'logits', 1.0, 20, 1.0, False, None),
    'reviewkd-kd': ('KDLoss', 'logits', 1.0, 0, 1.0, True, None),
    'reviewkd-dkd': ('DKDLoss', 'logits', 1.0, 20, 1.0, True, None),
    'fitnet': ('FitNetLoss', 'stages.1', 100.0, 0, 1.0, False, False),
    'at': ('ATLoss', 'stages', 1000.0, 0, 1.0, False, False),
    'pkt': ('PKTLoss', 'pooled', 30000.0, 0, 1.0, False, False),
    'rkd': ('RKDLoss', 'pooled', 1.0, 0, 1.0, False, False),
    'vid': ('VIDLoss', 'stages', 1.0, 0, 1.0, False, False),
    'ofd': ('OFDLoss', 'stages', 0.001, 0, 1.0, False, True),
    'crd': ('CRDLoss', 'pooled', 0.8, 0, 1.0, False, False),
}
SCHED = '_8xb16-240e_cifar100.py'


def method_configs():
    for method in METHODS:
        pairs = PAIRS6 if method in ('kd', 'dkd', 'reviewkd-kd',
                                     'reviewkd-dkd') else PAIRS2
        for pair in pairs:
            yield method, pair


def test_every_compare_config_is_listed_here():
    found = {
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs/compare/*/*.py'))
    }
    expected = {
        f'configs/compare/{m}/{m}_{p}{SCHED}'
        for m, p in method_configs()
    }
    assert found == expected


def build(cfg):
    cfg = cfg.model
    cfg.teacher_ckpt = None
    cfg.pop('type')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(**cfg)
    model.train()
    return model


def step(model, n=4):
    MessageHub.get_current_instance().update_info('epoch', 30)
    samples = []
    for i in range(n):
        sample = DataSample().set_gt_label(i % 100)
        sample.set_metainfo(dict(sample_idx=i * 7))
        samples.append(sample)
    try:
        return model.loss(torch.randn(n, 3, 32, 32), samples)
    finally:
        MessageHub.get_current_instance().update_info('epoch', 0)


@pytest.mark.parametrize('method,pair', list(method_configs()))
def test_method_config_states_its_recipe_and_steps(method, pair):
    path = osp.join(ROOT, 'configs', 'compare', method,
                    f'{method}_{pair}{SCHED}')
    cfg = load_config(path)
    loss_type, inputs, weight, warmup, task, review, preact = METHODS[method]
    reviewkd = load_config(
        osp.join(ROOT, 'configs', 'reviewkd', 'cifar100',
                 f'reviewkd_{pair}{SCHED}'))
    # teacher, student, data and schedule are the pair's
    assert cfg.model.teacher == reviewkd.model.teacher
    assert cfg.model.student == reviewkd.model.student
    assert cfg.param_scheduler == reviewkd.param_scheduler
    model = build(cfg)
    assert (model.connector is not None) == review
    if review:
        assert model.loss_weight == reviewkd.model.loss_weight
    name = method.split('-')[-1]
    term = model.distill_terms[name]
    assert type(term.loss).__name__ == loss_type
    assert term.inputs == (inputs, inputs)
    assert (term.loss_weight, term.warmup_epochs) == (weight, warmup)
    assert model.task_loss_weight == task
    if preact is not None:
        assert cfg.model.student_feats.preact == preact
        assert cfg.model.teacher_feats.preact == preact
    losses = step(model)
    value = losses[f'loss_{name}']
    assert torch.isfinite(value) and value.item() > 0
    if review:
        assert losses['loss_hcl'].item() > 0
    else:
        assert 'loss_hcl' not in losses


ABLATIONS = {
    'table7-rm': ('ReviewPairsConnector', None, ()),
    'table7-rm-rlf': ('ABFConnector', 'sum', ()),
    'table7-rm-rlf-abf': ('ABFConnector', 'attention', ()),
    'table7-rm-rlf-hcl': ('ABFConnector', 'sum', (4, 2, 1)),
    'table7-rm-rlf-abf-hcl': ('ABFConnector', 'attention', (4, 2, 1)),
}


@pytest.mark.parametrize('row', sorted(ABLATIONS))
def test_table7_rows_remove_the_right_parts(row):
    cfg = load_config(
        osp.join(ROOT, 'configs', 'ablations',
                 f'{row}_wrn40-2_wrn16-2{SCHED}'))
    connector, fusion, pools = ABLATIONS[row]
    model = build(cfg)
    assert type(model.connector).__name__ == connector
    if isinstance(model.connector, ABFConnector):
        assert {abf.fusion for abf in model.connector.abfs} == {fusion}
    else:  # RM: every student level against every teacher level j <= i
        assert len(model.connector.adapters) == 10
    assert model.distill_loss.pool_sizes == pools
    assert model.loss_weight == 5.0
    assert step(model)['loss_hcl'].item() > 0


def test_table7_none_row_is_the_plain_student():
    cfg = load_config(
        osp.join(ROOT, 'configs', 'ablations',
                 f'table7-none_wrn16-2{SCHED}'))
    assert cfg.model.type == 'ImageClassifier'
    assert cfg.model.backbone.depth == 16


def test_table6_plan_covers_the_16_cells_from_one_base_config():
    plan = runpy.run_path(
        osp.join(ROOT, 'configs', 'ablations', 'plans', 'table6.py'))
    rows = plan['rows']
    assert len({r['config'] for r in rows}) == 1
    assert sorted(r['matrix'] for r in rows) == [(i, j) for i in range(1, 5)
                                                 for j in range(1, 5)]
    row = next(r for r in rows if r['matrix'] == (3, 4))
    assert row['paper'] == 50.4
    cfg = load_config(osp.join(ROOT, row['config']))
    cfg.merge_from_dict(row['cfg_options'])
    model = build(cfg)
    assert isinstance(model.connector, ReviewPairsConnector)
    assert model.connector.pairs == [(2, 3)]
    losses = step(model)
    assert [k for k in losses if k.startswith('loss_hcl')] == [
        'loss_hcl.0', 'loss_hcl'
    ]


@pytest.mark.parametrize('plan', ['table1', 'table6', 'table7'])
def test_plans_name_existing_configs(plan):
    rows = runpy.run_path(
        osp.join(ROOT, 'configs', 'ablations', 'plans', f'{plan}.py'))['rows']
    assert rows
    for config in sorted({row['config'] for row in rows}):
        assert osp.isfile(osp.join(ROOT, config)), config
        Config.fromfile(osp.join(ROOT, config))
