# Copyright (c) mmreviewkd contributors. All rights reserved.
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

import mmreviewkd.registry as reg
from mmreviewkd.models import ABFConnector, HCLLoss, ReviewKDDistiller

TINY_RESNET = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet', depth=18, stem_channels=8, base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss')))


def test_registries_are_children_of_mmengine_with_locations():
    assert sorted(reg.__all__) == ['DATASETS', 'FUNCTIONS', 'HOOKS',
                                   'MODELS', 'OPTIM_WRAPPERS']  # those used
    for name in reg.__all__:
        registry = getattr(reg, name)
        assert registry.scope == 'mmreviewkd'
        assert registry.parent is not None and registry.parent.scope == \
            'mmengine'
        assert registry._locations, name
    assert MMENGINE_MODELS.children['mmreviewkd'] is reg.MODELS


def test_register_all_modules_sets_default_scope():
    from mmreviewkd.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmreviewkd'
    assert reg.MODELS.get('HCLLoss') is HCLLoss
    assert reg.HOOKS.get('StudentExportHook') is not None


def test_build_in_mmpretrain_scope():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        assert isinstance(MODELS.build(dict(type='mmreviewkd.HCLLoss')),
                          HCLLoss)
        loss = MODELS.build(dict(type='HCLLoss', _scope_='mmreviewkd'))
        assert isinstance(loss, HCLLoss)
        distiller = MODELS.build(
            dict(
                type='mmreviewkd.ReviewKDDistiller',
                student=TINY_RESNET,  # inline, built in the mmpretrain scope
                teacher='mmpretrain::resnet/resnet18_8xb32_in1k.py',
                data_preprocessor=dict(
                    num_classes=10, mean=[0., 0., 0.], std=[1., 1., 1.])))
    assert isinstance(distiller, ReviewKDDistiller)
    assert type(distiller.student).__name__ == 'ImageClassifier'
    assert type(distiller.teacher).__name__ == 'ImageClassifier'
    assert distiller.teacher.backbone.depth == 18
    # stages + pooled, channels inferred from both models
    assert distiller.connector.in_channels == [8, 16, 32, 64, 64]
    assert distiller.connector.out_channels == [64, 128, 256, 512, 512]
    assert type(distiller.data_preprocessor).__name__ == 'ClsDataPreprocessor'


def test_build_in_mmdet_scope_with_config_references():
    from mmdet.registry import MODELS
    student = Config.fromfile(
        Config._get_cfg_path('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
                             '')[0]).model.to_dict()
    student['backbone']['init_cfg'] = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        conn = MODELS.build(
            dict(type='mmreviewkd.ABFConnector', in_channels=[4],
                 out_channels=[4]))
        assert isinstance(conn, ABFConnector)
        distiller = MODELS.build(
            dict(
                type='mmreviewkd.ReviewKDDistiller',
                student=student,  # inline mmdet dict
                teacher=dict(
                    cfg_path='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
                infer_input_shape=(3, 64, 64)))
    assert type(distiller.student).__name__ == 'RetinaNet'
    assert type(distiller.teacher).__name__ == 'RetinaNet'
    assert distiller.student.backbone.depth == 18
    assert distiller.teacher.backbone.depth == 50
    assert distiller.connector.in_channels == [256] * 5
    assert distiller.connector.out_channels == [256] * 5
    assert distiller.connector.mid_channels == 256


def test_unknown_component_name_is_clear():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(KeyError, match='NoSuchConnector'):
            MODELS.build(
                dict(
                    type='mmreviewkd.ReviewKDDistiller',
                    student=TINY_RESNET,
                    teacher=TINY_RESNET,
                    connector=dict(type='NoSuchConnector')))


def test_missing_config_reference_is_clear():
    with pytest.raises(FileNotFoundError, match='cannot be resolved|not '):
        ReviewKDDistiller(
            student='mmpretrain::resnet/no_such_config.py',
            teacher=TINY_RESNET)


def test_student_forward_modes_use_the_student():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        distiller = MODELS.build(
            dict(
                type='mmreviewkd.ReviewKDDistiller',
                student=TINY_RESNET,
                teacher=TINY_RESNET))
    distiller.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        distiller(x, mode='tensor'), distiller.student(x, mode='tensor'))
