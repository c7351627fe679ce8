# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Tests of the CRD / RepDistiller CIFAR backbones and ImageNet MobileNetV1."""
from typing import List, Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import channel_shuffle

from mmreviewkd.models.backbones.cifar_mobilenet_v2 import CifarMobileNetV2
from mmreviewkd.models.backbones.cifar_resnet import CifarResNet
from mmreviewkd.models.backbones.cifar_shufflenet_v1 import CifarShuffleNetV1
from mmreviewkd.models.backbones.cifar_shufflenet_v2 import CifarShuffleNetV2
from mmreviewkd.models.backbones.cifar_vgg import CifarVGG
from mmreviewkd.models.backbones.cifar_wrn import CifarWRN
from mmreviewkd.models.backbones.mobilenet_v1 import MobileNetV1

# name: (class, kwargs, channels before the fc, fc classes, total parameters
# of the ORIGINAL model incl. its fc -- counted by instantiating RepDistiller's
# models/*.py (ReviewKD's ImageNet/models/mobilenet.py for mobilenet_v1))
ARCHS = {
    'resnet8': (CifarResNet, dict(depth=8), 64, 100, 83892),
    'resnet14': (CifarResNet, dict(depth=14), 64, 100, 181108),
    'resnet20': (CifarResNet, dict(depth=20), 64, 100, 278324),
    'resnet32': (CifarResNet, dict(depth=32), 64, 100, 472756),
    'resnet44': (CifarResNet, dict(depth=44), 64, 100, 667188),
    'resnet56': (CifarResNet, dict(depth=56), 64, 100, 861620),
    'resnet110': (CifarResNet, dict(depth=110), 64, 100, 1736564),
    'resnet8x4': (CifarResNet, dict(depth=8, stem_channels=32,
                                    base_channels=64), 256, 100, 1233540),
    'resnet32x4': (CifarResNet, dict(depth=32, stem_channels=32,
                                     base_channels=64), 256, 100, 7433860),
    'wrn_16_1': (CifarWRN, dict(depth=16, widen_factor=1), 64, 100, 180916),
    'wrn_16_2': (CifarWRN, dict(depth=16, widen_factor=2), 128, 100, 703284),
    'wrn_40_1': (CifarWRN, dict(depth=40, widen_factor=1), 64, 100, 569780),
    'wrn_40_2': (CifarWRN, dict(depth=40, widen_factor=2), 128, 100,
                 2255156),
    'vgg8': (CifarVGG, dict(depth=8), 512, 100, 3965028),
    'vgg11': (CifarVGG, dict(depth=11), 512, 100, 9277284),
    'vgg13': (CifarVGG, dict(depth=13), 512, 100, 9462180),
    'vgg16': (CifarVGG, dict(depth=16), 512, 100, 14774436),
    'vgg19': (CifarVGG, dict(depth=19), 512, 100, 20086692),
    'MobileNetV2': (CifarMobileNetV2, dict(widen_factor=0.5), 1280, 100,
                    812836),
    'ShuffleV1': (CifarShuffleNetV1, dict(groups=3), 960, 100, 949258),
    'ShuffleV2': (CifarShuffleNetV2, dict(net_size=1), 1024, 100, 1355528),
    'mobilenet_v1': (MobileNetV1, dict(), 1024, 1000, 4231976),
}

# One representative per family for the (slower) forward tests:
# name -> (backbone, all out_indices, input size, expected (C, H, W) per
# output index at that size).
FORWARD_CASES = {
    'resnet20': (lambda: CifarResNet(depth=20, out_indices=(0, 1, 2)),
                 (32, 32), [(16, 32, 32), (32, 16, 16), (64, 8, 8)]),
    'resnet8x4_32x48': (lambda: CifarResNet(
        depth=8, stem_channels=32, base_channels=64, out_indices=(0, 1, 2)),
                        (32, 48), [(64, 32, 48), (128, 16, 24),
                                   (256, 8, 12)]),
    'wrn_16_2': (lambda: CifarWRN(
        depth=16, widen_factor=2, out_indices=(0, 1, 2, 3)), (32, 32),
                 [(32, 32, 32), (64, 16, 16), (128, 8, 8), (128, 8, 8)]),
    'wrn_16_1_32x48': (lambda: CifarWRN(
        depth=16, widen_factor=1, out_indices=(0, 1, 2, 3)), (32, 48),
                       [(16, 32, 48), (32, 16, 24), (64, 8, 12),
                        (64, 8, 12)]),
    'vgg8': (lambda: CifarVGG(depth=8, out_indices=(0, 1, 2, 3, 4)),
             (32, 32), [(64, 32, 32), (128, 16, 16), (256, 8, 8),
                        (512, 4, 4), (512, 4, 4)]),
    'vgg13_32x48': (lambda: CifarVGG(depth=13, out_indices=(0, 1, 2, 3, 4)),
                    (32, 48), [(64, 32, 48), (128, 16, 24), (256, 8, 12),
                               (512, 4, 6), (512, 4, 6)]),
    # the original's quirk: a 64-high input is pooled once more before block4
    'vgg8_64x64': (lambda: CifarVGG(depth=8, out_indices=(3, 4)), (64, 64),
                   [(512, 8, 8), (512, 4, 4)]),
    'MobileNetV2': (lambda: CifarMobileNetV2(out_indices=tuple(range(8))),
                    (32, 32), [(8, 16, 16), (12, 16, 16), (16, 8, 8),
                               (32, 4, 4), (48, 4, 4), (80, 2, 2),
                               (160, 2, 2), (1280, 2, 2)]),
    'MobileNetV2_32x48': (lambda: CifarMobileNetV2(out_indices=(1, 7)),
                          (32, 48), [(12, 16, 24), (1280, 2, 3)]),
    'ShuffleV1': (lambda: CifarShuffleNetV1(out_indices=(0, 1, 2)), (32, 32),
                  [(240, 16, 16), (480, 8, 8), (960, 4, 4)]),
    'ShuffleV1_32x48': (lambda: CifarShuffleNetV1(out_indices=(0, 1, 2)),
                        (32, 48), [(240, 16, 24), (480, 8, 12),
                                   (960, 4, 6)]),
    'ShuffleV2': (lambda: CifarShuffleNetV2(out_indices=(0, 1, 2, 3)),
                  (32, 32), [(116, 16, 16), (232, 8, 8), (464, 4, 4),
                             (1024, 4, 4)]),
    'ShuffleV2_32x48': (lambda: CifarShuffleNetV2(out_indices=(0, 1, 2, 3)),
                        (32, 48), [(116, 16, 24), (232, 8, 12), (464, 4, 6),
                                   (1024, 4, 6)]),
    'mobilenet_v1_64x96': (lambda: MobileNetV1(out_indices=(0, 1, 2, 3)),
                           (64, 96), [(128, 16, 24), (256, 8, 12),
                                      (512, 4, 6), (1024, 2, 3)]),
}

# name -> (backbone, input size, {preact: [(name, relu, (C, H, W)), ...]})
REVIEW_CASES = {
    'resnet20': (lambda: CifarResNet(depth=20), (32, 32), {
        True: [('layer1.2.preact', False, (16, 32, 32)),
               ('layer2.2.preact', False, (32, 16, 16)),
               ('layer3.2.preact', False, (64, 8, 8))],
        False: [('layer1', False, (16, 32, 32)),
                ('layer2', False, (32, 16, 16)),
                ('layer3', False, (64, 8, 8))],
    }),
    'resnet8x4': (lambda: CifarResNet(
        depth=8, stem_channels=32, base_channels=64), (32, 48), {
            True: [('layer1.0.preact', False, (64, 32, 48)),
                   ('layer2.0.preact', False, (128, 16, 24)),
                   ('layer3.0.preact', False, (256, 8, 12))],
            False: [('layer1', False, (64, 32, 48)),
                    ('layer2', False, (128, 16, 24)),
                    ('layer3', False, (256, 8, 12))],
        }),
    'wrn_16_2': (lambda: CifarWRN(depth=16, widen_factor=2), (32, 32), {
        True: [('block2.0.bn1', False, (32, 32, 32)),
               ('block3.0.bn1', False, (64, 16, 16)),
               ('bn1', False, (128, 8, 8))],
        False: [('block1', False, (32, 32, 32)),
                ('block2', False, (64, 16, 16)),
                ('block3', False, (128, 8, 8))],
    }),
    'vgg13': (lambda: CifarVGG(depth=13), (32, 32), {
        True: [('block1', False, (128, 16, 16)),
               ('block2', False, (256, 8, 8)),
               ('block3', False, (512, 4, 4)),
               ('block4', False, (512, 4, 4))],
        False: [('block1', True, (128, 16, 16)),
                ('block2', True, (256, 8, 8)),
                ('block3', True, (512, 4, 4)),
                ('block4', True, (512, 4, 4))],
    }),
    'MobileNetV2': (lambda: CifarMobileNetV2(), (32, 32), {
        p: [('blocks.1', False, (12, 16, 16)), ('blocks.2', False,
                                                (16, 8, 8)),
            ('blocks.4', False, (48, 4, 4)), ('blocks.6', False, (160, 2, 2))]
        for p in (True, False)
    }),
    'ShuffleV1': (lambda: CifarShuffleNetV1(), (32, 32), {
        True: [('layer1.3.preact', False, (240, 16, 16)),
               ('layer2.7.preact', False, (480, 8, 8)),
               ('layer3.3.preact', False, (960, 4, 4))],
        False: [('layer1', False, (240, 16, 16)),
                ('layer2', False, (480, 8, 8)),
                ('layer3', False, (960, 4, 4))],
    }),
    'ShuffleV2': (lambda: CifarShuffleNetV2(), (32, 32), {
        True: [('layer1.3.preact', False, (116, 16, 16)),
               ('layer2.7.preact', False, (232, 8, 8)),
               ('layer3.3.preact', False, (464, 4, 4))],
        False: [('layer1', False, (116, 16, 16)),
                ('layer2', False, (232, 8, 8)),
                ('layer3', False, (464, 4, 4))],
    }),
    'mobilenet_v1': (lambda: MobileNetV1(), (64, 64), {
        True: [('layers.3.4', False, (128, 16, 16)),
               ('layers.5.4', False, (256, 8, 8)),
               ('layers.11.4', False, (512, 4, 4)),
               ('layers.13.4', False, (1024, 2, 2))],
        False: [('layers.3.4', True, (128, 16, 16)),
                ('layers.5.4', True, (256, 8, 8)),
                ('layers.11.4', True, (512, 4, 4)),
                ('layers.13.4', True, (1024, 2, 2))],
    }),
}


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """These tiny forwards are fastest on one thread; with several threads on
    a busy 2-core machine OpenMP spin-waiting makes them 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics/affine so pre- and post-activation differ."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)


def read_points(backbone: nn.Module, points: List[Tuple[str, bool]],
                x: torch.Tensor):
    """Run one forward with hooks at ``points``.

    Returns (features as the distiller reads them, the raw hooked outputs,
    clones of them taken inside the hooks, call count of every module).
    """
    modules = dict(backbone.named_modules())
    raw, clones, calls = [], [], {}
    handles = []
    for name, module in modules.items():
        if name and not isinstance(module, nn.ModuleList):  # not callable
            calls[name] = 0

            def count(mod, inp, out, name=name):
                calls[name] += 1

            handles.append(module.register_forward_hook(count))
    for name, _ in points:

        def grab(mod, inp, out):
            raw.append(out)
            clones.append(out.detach().clone())

        handles.append(modules[name].register_forward_hook(grab))
    outs = backbone(x)
    for h in handles:
        h.remove()
    feats = [F.relu(r) if relu else r for r, (_, relu) in zip(raw, points)]
    return feats, raw, clones, calls, outs


@pytest.mark.parametrize('arch', list(ARCHS))
def test_parameter_count_matches_original(arch):
    cls, kwargs, feat_channels, num_classes, expected = ARCHS[arch]
    backbone = cls(**kwargs)
    fc_params = feat_channels * num_classes + num_classes
    assert sum(p.numel() for p in backbone.parameters()) + fc_params == \
        expected


@pytest.mark.parametrize('arch', list(ARCHS))
def test_default_output_is_pooled_feature_map(arch):
    cls, kwargs, feat_channels, _, _ = ARCHS[arch]
    backbone = cls(**kwargs)
    size = 64 if arch == 'mobilenet_v1' else 32
    outs = backbone(torch.randn(2, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape[:2] == (2, feat_channels)


@pytest.mark.parametrize('case', list(FORWARD_CASES))
def test_output_shapes(case):
    build, (h, w), expected = FORWARD_CASES[case]
    backbone = build()
    backbone.eval()
    outs = backbone(torch.randn(2, 3, h, w))
    assert [tuple(o.shape) for o in outs] == [(2, ) + e for e in expected]


def test_final_outputs_are_activated():
    x = torch.randn(2, 3, 32, 32)
    for backbone in (CifarResNet(depth=8), CifarWRN(depth=16),
                     CifarVGG(depth=8), CifarMobileNetV2(),
                     CifarShuffleNetV1(), CifarShuffleNetV2()):
        randomize_bn(backbone)
        backbone.eval()
        out = backbone(x)[-1]
        assert out.min() >= 0 and out.max() > 0, type(backbone).__name__


@pytest.mark.parametrize('case', list(REVIEW_CASES))
@pytest.mark.parametrize('preact', [True, False])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_review_feature_points(case, preact, mode):
    build, (h, w), expected = REVIEW_CASES[case]
    backbone = build()
    randomize_bn(backbone)
    backbone.train(mode == 'train')
    points = backbone.review_feature_points(preact)
    assert [(n, r) for n, r, _ in expected[preact]] == points
    feats, raw, clones, calls, _ = read_points(backbone, points,
                                               torch.randn(2, 3, h, w))
    assert [tuple(f.shape) for f in feats] == \
        [(2, ) + s for _, _, s in expected[preact]]
    # every leaf module (taps included) and every point ran exactly once;
    # containers iterated by forward() (e.g. MobileNetV1.layers) ran at most
    # once
    modules = dict(backbone.named_modules())
    must_run = {
        k
        for k in calls
        if not list(modules[k].children()) or k in dict(points)
    }
    assert {k: v for k, v in calls.items() if v != 1 and k in must_run} == {}
    assert max(calls.values()) == 1
    # nothing modified a tap output after its hook fired (in-place trap)
    for (name, _), r, c in zip(points, raw, clones):
        assert torch.equal(r, c), f'{name} was modified in place'


def _features(backbone, preact, x):
    return read_points(backbone, backbone.review_feature_points(preact),
                       x)[0]


@pytest.mark.parametrize(
    'build', [
        lambda: CifarResNet(depth=20),
        lambda: CifarResNet(depth=8, stem_channels=32, base_channels=64),
        lambda: CifarShuffleNetV1()
    ],
    ids=['resnet20', 'resnet8x4', 'ShuffleV1'])
def test_post_is_relu_of_pre(build):
    backbone = build()
    randomize_bn(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    pre = _features(backbone, True, x)
    post = _features(backbone, False, x)
    for p, q in zip(pre, post):
        assert p.min() < 0  # a real pre-activation feature
        assert not torch.equal(p, q)
        torch.testing.assert_close(q, F.relu(p), rtol=0, atol=0)


def test_shufflenet_v2_pre_is_unshuffled_concat():
    backbone = CifarShuffleNetV2()
    randomize_bn(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    pre = _features(backbone, True, x)
    post = _features(backbone, False, x)
    for p, q in zip(pre, post):
        assert p.min() < 0
        torch.testing.assert_close(channel_shuffle(F.relu(p), 2), q)


def test_vgg_and_mobilenet_v1_post_is_relu_of_pre():
    for backbone, size in ((CifarVGG(depth=8), 32), (MobileNetV1(), 64)):
        randomize_bn(backbone)
        backbone.eval()
        x = torch.randn(2, 3, size, size)
        pre = _features(backbone, True, x)
        post = _features(backbone, False, x)
        for p, q in zip(pre, post):
            assert p.min() < 0
            assert torch.equal(q, F.relu(p))


def test_wrn_pre_is_next_bn_of_raw_stage_output():
    backbone = CifarWRN(depth=16, widen_factor=2)
    randomize_bn(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    pre = _features(backbone, True, x)
    raw = _features(backbone, False, x)  # RepDistiller's preact=False
    with torch.no_grad():
        bns = [backbone.block2[0].bn1, backbone.block3[0].bn1, backbone.bn1]
        for p, r, bn in zip(pre, raw, bns):
            assert r.min() < 0  # raw stage outputs are not activated
            torch.testing.assert_close(p, bn(r), rtol=0, atol=0)
    # the final output is relu(bn1(block3 output)) = relu(last pre feature)
    torch.testing.assert_close(backbone(x)[-1], F.relu(pre[-1]))
    relu_post = CifarWRN(depth=16, widen_factor=2, relu_post_features=True)
    relu_post.load_state_dict(backbone.state_dict())
    relu_post.eval()
    for r, q in zip(raw, _features(relu_post, False, x)):
        torch.testing.assert_close(q, F.relu(r), rtol=0, atol=0)


def test_frozen_stages_and_norm_eval():
    backbone = CifarResNet(depth=8, frozen_stages=1, norm_eval=True)
    backbone.train()
    assert not any(p.requires_grad for p in backbone.conv1.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert not backbone.layer1[0].bn1.training
    assert not backbone.layer2[0].bn1.training  # norm_eval
    assert backbone.layer2.training
    mv1 = MobileNetV1(frozen_stages=1)
    mv1.train()
    assert not any(p.requires_grad for p in mv1.layers[3].parameters())
    assert all(p.requires_grad for p in mv1.layers[4].parameters())
    assert not mv1.layers[3][4].training and mv1.layers[4][4].training


@pytest.mark.parametrize(
    'arch', ['resnet8', 'wrn_16_1', 'vgg8', 'MobileNetV2', 'ShuffleV1',
             'ShuffleV2', 'mobilenet_v1'])
def test_train_reapplies_frozen_stages_and_norm_eval(arch):
    """Every backbone's train() (shared by FreezableBackbone): frozen stem
    and stage 1 stay frozen and in eval mode; with norm_eval every BN layer
    is in eval mode, without it the other BN layers train."""
    cls, kwargs = ARCHS[arch][:2]
    for norm_eval in (True, False):
        backbone = cls(frozen_stages=1, norm_eval=norm_eval, **kwargs)
        backbone.eval()
        assert backbone.train() is backbone
        params = list(backbone.parameters())
        assert any(not p.requires_grad for p in params)
        assert any(p.requires_grad for p in params)
        bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
        frozen_bns = [
            m for m in bns
            if not any(p.requires_grad for p in m.parameters())
        ]
        assert frozen_bns and not any(m.training for m in frozen_bns)
        if norm_eval:
            assert not any(m.training for m in bns)
        else:
            assert all(m.training for m in bns if m not in frozen_bns)
        backbone.train(False)
        assert not any(m.training for m in backbone.modules())


@pytest.mark.parametrize(
    'build, head, first_frozen', [
        (lambda k: CifarWRN(depth=16, frozen_stages=k), 'bn1', 3),
        (lambda k: CifarShuffleNetV2(net_size=0.5, frozen_stages=k), 'bn2',
         4),
        (lambda k: CifarMobileNetV2(frozen_stages=k), 'conv2', 8),
    ],
    ids=['wrn_16_2', 'ShuffleV2', 'MobileNetV2'])
def test_frozen_stages_reach_the_final_layers(build, head, first_frozen):
    """The layers after the last stage freeze from ``frozen_stages =
    first_frozen`` on: with the last stage (WRN) or one step later, when the
    whole backbone is frozen."""
    for k in (first_frozen - 1, first_frozen):
        backbone = build(k)
        backbone.train()
        head_params = list(getattr(backbone, head).parameters())
        assert head_params
        assert all(p.requires_grad for p in head_params) == (k < first_frozen)
        assert getattr(backbone, head).training == (k < first_frozen)
    # then the whole backbone is frozen
    assert not any(p.requires_grad for p in backbone.parameters())


def test_invalid_arguments():
    with pytest.raises(ValueError, match='6n\\+2'):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match='6n\\+4'):
        CifarWRN(depth=20)
    with pytest.raises(ValueError, match='depth must be one of'):
        CifarVGG(depth=10)
    with pytest.raises(ValueError, match='out of range'):
        CifarResNet(out_indices=(3, ))
    assert CifarWRN(depth=16, out_indices=(-1, )).out_indices == (3, )


def test_init_weights_reproduces_original_init():
    torch.manual_seed(0)
    backbone = CifarResNet(depth=56)
    backbone.init_weights()
    weight = backbone.layer2[1].conv1.weight  # fan_out = 32 * 9
    assert abs(weight.std().item() - (2 / (32 * 9))**0.5) < 0.01
    assert torch.equal(backbone.layer2[1].bn1.weight,
                       torch.ones_like(backbone.layer2[1].bn1.weight))
    vgg = CifarVGG(depth=8)
    vgg.init_weights()
    assert torch.equal(vgg.block1[0].bias, torch.zeros(128))


def test_image_classifier_from_config():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmreviewkd  # noqa: F401  (registers the mmreviewkd scope)

    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='mmreviewkd.CifarResNet', depth=20),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=100,
                in_channels=64,
                loss=dict(type='CrossEntropyLoss'))))
    assert type(model.backbone).__name__ == 'CifarResNet'
    assert sum(p.numel() for p in model.parameters()) == 278324
    logits = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert logits.shape == (2, 100)
