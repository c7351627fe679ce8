# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Stage discovery on backbones we know nothing about, token maps of
transformers, stride pairing of unequal level counts, and print_levels."""
import os.path as osp
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample

from helpers.models import PREPROCESSOR
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.distillers.feature_tap import (FeatureTap,
                                                      build_feature_tap,
                                                      resolve_feature_points)
from mmreviewkd.models.distillers.stage_discovery import ForwardRecord
from mmreviewkd.utils.cli_errors import format_error
from mmreviewkd.utils.errors import ConfigError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))

import print_levels  # noqa: E402

MBV2 = dict(type='MobileNetV2', widen_factor=0.35)
CONVNEXT = dict(type='ConvNeXt', arch='atto')
RESNET18 = dict(type='ResNet', depth=18)
TINY_SWIN = dict(
    type='SwinTransformer',
    arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
    window_size=2)
TINY_VIT = dict(
    type='VisionTransformer',
    arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=8,
    out_type='cls_token')


def classifier(backbone, neck=True, in_channels=8):
    cfg = dict(
        type='ImageClassifier',
        backbone=backbone,
        head=dict(
            type='LinearClsHead',
            num_classes=10,
            in_channels=in_channels,
            loss=dict(type='CrossEntropyLoss')))
    if neck:
        cfg['neck'] = dict(type='GlobalAveragePooling')
    return cfg


def build_classifier(backbone, neck=True):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PRETRAIN_MODELS.build(classifier(backbone, neck))


def distiller(student, teacher, size=64, **kwargs):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(
            student=student,
            teacher=teacher,
            data_preprocessor=PREPROCESSOR,
            infer_input_shape=(3, size, size),
            **kwargs)


def names(points):
    return [p[0] for p in points]


# module names and strides found at a 64 x 64 input, shallow to deep
DISCOVERED = {
    'MobileNetV2': (MBV2, ['layer1', 'layer2', 'layer3', 'layer5',
                           'conv2'], [2, 4, 8, 16, 32]),
    'ConvNeXt': (CONVNEXT, [f'stages.{i}' for i in range(4)], [4, 8, 16, 32]),
    # ResNets are special-cased (res_layers); the generic rule finds the
    # stem too, and never layer3.0.conv1 (stride 8, ends after layer2)
    'ResNet': (RESNET18, ['relu', 'layer1', 'layer2', 'layer3',
                          'layer4'], [2, 4, 8, 16, 32]),
    'EfficientNet':
    (dict(type='EfficientNet',
          arch='b0'), [f'layers.{i}'
                       for i in (1, 2, 3, 4, 6)], [2, 4, 8, 16, 32]),
    'ShuffleNetV2': (dict(type='ShuffleNetV2', widen_factor=0.5),
                     ['conv1', 'maxpool', 'layers.0', 'layers.1',
                      'layers.3'], [2, 4, 8, 16, 32]),
    'MobileNetV3':
    (dict(type='MobileNetV3',
          arch='small'), ['layer0', 'layer1', 'layer3', 'layer8',
                          'layer12'], [2, 4, 8, 16, 32]),
}


@pytest.mark.parametrize('arch', list(DISCOVERED))
def test_generic_discovery_finds_one_stage_per_stride(arch):
    backbone, expected, strides = DISCOVERED[arch]
    model = build_classifier(backbone, neck=arch != 'ConvNeXt')
    record = ForwardRecord(model, (3, 64, 64), 'teacher')
    stages = record.stages()
    assert [c.name for c in stages] == [f'backbone.{n}' for n in expected]
    assert [record.stride(c) for c in stages] == [f's{s}' for s in strides]
    if arch == 'ResNet':
        return
    points, pooled = resolve_feature_points(model, False, 'teacher',
                                            (3, 64, 64))
    assert names(points) == [f'backbone.{n}' for n in expected]
    # ConvNeXt pools inside its backbone (no neck): its output is the
    # pooled level, and its norm3 (the pooled 1 x 1 map) is no stage
    assert pooled == ('backbone' if arch == 'ConvNeXt' else 'neck')


def test_swin_stage_tokens_become_maps_without_changing_the_model():
    # pad_small_map: Swin-T's option for maps smaller than its windows
    swin = dict(type='SwinTransformer', arch='tiny', pad_small_map=True)
    model = distiller(classifier(MBV2), classifier(swin), size=64)
    tap = model.teacher_tap
    assert names(tap.points) == [
        'backbone.stages.0', 'backbone.stages.1', 'backbone.stages.2',
        'backbone.norm3'
    ]
    assert tap.grids == {'backbone.norm3': 'backbone.stages.3'}
    assert tap.pooled_from == 'neck'
    assert model.connector.out_channels == [96, 192, 384, 768, 768]
    _, t_shapes = model.infer_feature_shapes((3, 64, 64))
    assert [tuple(s[-2:]) for s in t_shapes] == [(16, 16), (8, 8), (4, 4),
                                                 (2, 2), (1, 1)]
    # a zoo checkpoint of the plain model still loads strictly
    plain = build_classifier(swin)
    model.teacher.load_state_dict(plain.state_dict(), strict=True)
    # the deepest map is exactly what the backbone itself returns
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        model.teacher.extract_feat(x)
        feats = model.teacher_tap.pop()
        own = model.teacher.backbone(x)[-1]
    torch.testing.assert_close(feats[3], own)


def test_swin_maps_follow_the_training_input_size():
    model = build_classifier(TINY_SWIN).eval()  # no drop path
    tap = build_feature_tap(model, {}, 'teacher', (3, 64, 64))
    assert names(tap.points)[:3] == [f'backbone.stages.{i}' for i in range(3)]
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        model.extract_feat(x)
        feats = tap.pop()
        own = model.backbone(x)[-1]
    assert [tuple(f.shape) for f in feats] == [(2, 16, 24, 24),
                                               (2, 32, 12, 12), (2, 64, 6, 6),
                                               (2, 128, 3, 3), (2, 128, 1, 1)]
    torch.testing.assert_close(feats[3], own)


def test_vit_patch_tokens_use_the_grid_of_the_patch_embedding():
    model = build_classifier(TINY_VIT, neck=False).eval()
    points, pooled = resolve_feature_points(model, False, 'student',
                                            (3, 32, 32))
    assert points == [('backbone.ln1', False, 'backbone.patch_embed')]
    assert pooled == 'backbone'  # the class token
    explicit = build_feature_tap(
        model, dict(points=['backbone.layers.0', 'backbone.layers.1']),
        'student', (3, 32, 32))
    assert explicit.grids == {
        f'backbone.layers.{i}': 'backbone.patch_embed'
        for i in range(2)
    }
    explicit.remove()
    tap = build_feature_tap(model, {}, 'student', (3, 32, 32))
    x = torch.randn(2, 3, 48, 48)  # another size: a 6 x 6 grid
    with torch.no_grad():
        cls_token = model.backbone(x)[-1]
        feats = tap.pop()
        model.backbone.out_type = 'featmap'
        featmap = model.backbone(x)[-1]
    tap.clear()
    assert tuple(feats[0].shape) == (2, 32, 6, 6)
    torch.testing.assert_close(feats[0], featmap)
    torch.testing.assert_close(feats[1].flatten(1), cls_token)


def test_unequal_level_counts_pair_by_stride_and_drop_the_extra():
    model = distiller(classifier(MBV2), classifier(RESNET18))
    # student: s2, s4, s8, s16, s32, pooled; ResNet: s4 ... s32, pooled
    pairing = model.level_pairing
    assert [lv.name for lv in pairing.dropped[0]] == ['backbone.layer1']
    assert pairing.dropped[1] == []
    assert names(model.student_tap.points) == [
        'backbone.layer2', 'backbone.layer3', 'backbone.layer5',
        'backbone.conv2'
    ]
    assert not model.student.backbone.layer1._forward_hooks  # never read
    assert model.connector.in_channels == [8, 16, 32, 1280, 1280]
    assert model.connector.out_channels == [64, 128, 256, 512, 512]
    summary = pairing.summary()
    assert 'paired by stride' in summary and '\n' not in summary
    assert 'dropped student backbone.layer1 (s2 32x32)' in summary


def test_undecidable_pairing_is_one_line_with_both_lists():
    points = [f'backbone.layer{i}' for i in (2, 3, 4, 5)] + ['backbone.conv2']
    with pytest.raises(ConfigError) as info:
        distiller(
            classifier(MBV2),
            classifier(RESNET18),
            student_feats=dict(points=points))
    message = format_error(info.value)
    assert '\n' not in message
    assert 's16: 2 student and 1 teacher level(s)' in message
    assert 'student: backbone.layer2 8ch s4 16x16' in message
    assert 'backbone.layer4 24ch s16 4x4, backbone.layer5 32ch s16 4x4' \
        in message
    assert '| teacher: backbone.layer1 64ch s4 16x16' in message
    assert 'neck 512ch pooled' in message
    assert 'student_feats=dict(points=[...])' in message
    assert 'pooled=None' in message


def test_given_points_keep_the_pooled_level_unless_turned_off():
    points = ['backbone.layer2', 'backbone.layer3', 'backbone.conv2']
    model = distiller(
        classifier(MBV2),
        classifier(RESNET18),
        student_feats=dict(points=points),
        teacher_feats=dict(
            points=['backbone.layer1', 'backbone.layer2', 'backbone.layer4']))
    assert model.student_tap.pooled_from == 'neck'
    assert model.connector.in_channels == [8, 16, 1280, 1280]
    model = distiller(
        classifier(MBV2),
        classifier(RESNET18),
        student_feats=dict(points=points, pooled=None))
    # 3 student levels, 5 teacher levels: s16 and the pooled one dropped
    assert model.student_tap.pooled_from is None
    assert model.teacher_tap.pooled_from is None
    assert names(model.teacher_tap.points) == [
        'backbone.layer1', 'backbone.layer2', 'backbone.layer4'
    ]


class UpDown(nn.Module):
    """Goes back to a finer map after a coarser one: no stage order."""

    def __init__(self):
        super().__init__()
        self.down1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.down2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.up = nn.Upsample(scale_factor=2)
        self.fuse = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        return (self.fuse(self.up(self.down2(self.down1(x)))), )


def test_failed_discovery_lists_the_candidates():
    model = build_classifier(MBV2)
    model.backbone = UpDown()
    with pytest.raises(ConfigError) as info:
        resolve_feature_points(model, False, 'student', (3, 32, 32))
    message = format_error(info.value)
    assert '\n' not in message
    assert 'cannot infer the stage features of the student backbone' in \
        message
    assert (
        'backbone.down1 (1, 8, 16, 16), backbone.down2 (1, 16, 8, 8), '
        'backbone.up (1, 16, 16, 16), backbone.fuse (1, 8, 16, 16)') in message
    assert 'student_feats=dict(points=[' in message


def test_loss_step_of_a_discovered_pair():
    model = distiller(
        classifier(MBV2, in_channels=1280),
        classifier(CONVNEXT, neck=False, in_channels=320),
        loss_weight=2.0)
    assert model.teacher_tap.pooled_from == 'backbone'
    assert model.connector.out_channels == [40, 80, 160, 320, 320]
    model.train()
    inputs = torch.randn(
        2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    losses = model.loss(inputs, samples)
    assert torch.isfinite(losses['loss_hcl']) and losses['loss_hcl'] > 0
    losses['loss_hcl'].backward()
    for name, p in model.student.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in model.connector.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.teacher.parameters())


def test_print_levels_prints_the_pairing_table(tmp_path, capsys):
    config = tmp_path / 'pair.py'
    config.write_text("default_scope = 'mmpretrain'\n"
                      'model = dict(\n'
                      "    type='mmreviewkd.ReviewKDDistiller',\n"
                      f'    student={classifier(MBV2, in_channels=1280)!r},\n'
                      f'    teacher={classifier(CONVNEXT, False, 320)!r},\n'
                      "    teacher_ckpt='checkpoints/not_downloaded.pth',\n"
                      '    infer_input_shape=(3, 224, 224))\n')
    print_levels.main([str(config), '--input-size', '64', '64'])
    out = capsys.readouterr().out
    assert 'teacher checkpoint not loaded' in out
    rows = [line.split() for line in out.splitlines()]
    table = {row[0]: row[1:] for row in rows if row and row[0].isdigit()}
    assert table['0'][:8] == [
        'backbone.layer2', '8', 's4', '16x16', 'backbone.stages.0', '40', 's4',
        '16x16'
    ]
    assert table['3'][:8] == [
        'backbone.conv2', '1280', 's32', '2x2', 'backbone.stages.3', '320',
        's32', '2x2'
    ]
    assert table['4'][:6] == [
        'neck', '1280', 'pooled', 'backbone', '320', 'pooled'
    ]
    assert 'abfs[4] no fuse (deepest), mid 512' in out
    assert 'dropped student levels: backbone.layer1 8ch s2 32x32' in out


class Pyramid(nn.Module):
    """A neck-like module returning three maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        return y, y[..., ::2, ::2], y[..., ::4, ::4]


def test_subset_of_a_tuple_output_keeps_only_the_chosen_maps():
    model = nn.ModuleDict(dict(neck=Pyramid()))
    tap = FeatureTap(model, [('neck', False)])
    model.neck(torch.randn(1, 3, 8, 8))
    assert [f.shape[-1] for f in tap.pop()] == [8, 4, 2]
    tap = tap.subset([1, 2])
    model.neck(torch.randn(1, 3, 8, 8))
    assert [f.shape[-1] for f in tap.pop()] == [4, 2]
    assert tap.level_names == ['neck[1]', 'neck[2]']
