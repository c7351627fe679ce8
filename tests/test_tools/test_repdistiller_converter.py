# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Tests of tools/model_converters/repdistiller_to_mmreviewkd.py.

``OrigResNet`` and ``OrigWRN`` below are test scaffolding: minimal faithful
re-implementations of RepDistiller's ``models/resnet.py`` and
``models/wrn.py`` (same modules, key names and forward, including
``is_feat`` / ``preact``), used to make original-format state_dicts.
"""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import mmreviewkd  # noqa: F401  (registers the mmreviewkd scope)
from mmreviewkd.models.backbones.converters import (
    CheckpointConversionError, build_model_cfg, canonical_arch,
    convert_repdistiller_checkpoint, convert_repdistiller_state_dict)

TOOL = Path(__file__).parents[2] / 'tools' / 'model_converters' / \
    'repdistiller_to_mmreviewkd.py'


# --------------------------------------------------------------------------
# RepDistiller models/resnet.py (BasicBlock variant)
class OrigBasicBlock(nn.Module):

    def __init__(self, inplanes, planes, stride=1, downsample=None,
                 is_last=False):
        super().__init__()
        self.is_last = is_last
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        preact = out
        out = F.relu(out)
        return (out, preact) if self.is_last else out


class OrigResNet(nn.Module):

    def __init__(self, depth, num_filters, num_classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(3, num_filters[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(num_filters[3], num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [
            OrigBasicBlock(self.inplanes, planes, stride, downsample,
                           blocks == 1)
        ]
        self.inplanes = planes
        for i in range(1, blocks):
            layers.append(
                OrigBasicBlock(planes, planes, is_last=(i == blocks - 1)))
        return nn.Sequential(*layers)

    def forward(self, x, is_feat=False, preact=False):
        x = self.relu(self.bn1(self.conv1(x)))
        f0 = x
        x, f1_pre = self.layer1(x)
        f1 = x
        x, f2_pre = self.layer2(x)
        f2 = x
        x, f3_pre = self.layer3(x)
        f3 = x
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        f4 = x
        x = self.fc(x)
        if is_feat:
            if preact:
                return [f0, f1_pre, f2_pre, f3_pre, f4], x
            return [f0, f1, f2, f3, f4], x
        return x


# RepDistiller models/wrn.py
class OrigWideBlock(nn.Module):

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (not self.equalInOut) and nn.Conv2d(
            in_planes, out_planes, 1, stride, 0, bias=False) or None

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equalInOut else x)))
        out = self.conv2(out)
        return torch.add(x if self.equalInOut else self.convShortcut(x), out)


class OrigNetworkBlock(nn.Module):

    def __init__(self, nb_layers, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            OrigWideBlock(i == 0 and in_planes or out_planes, out_planes,
                          i == 0 and stride or 1) for i in range(nb_layers)
        ])

    def forward(self, x):
        return self.layer(x)


class OrigWRN(nn.Module):

    def __init__(self, depth, num_classes, widen_factor=1):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = OrigNetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = OrigNetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = OrigNetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)
        self.nChannels = ch[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))

    def forward(self, x, is_feat=False, preact=False):
        out = self.conv1(x)
        f0 = out
        out = self.block1(out)
        f1 = out
        out = self.block2(out)
        f2 = out
        out = self.block3(out)
        f3 = out
        out = self.relu(self.bn1(out))
        out = F.avg_pool2d(out, 8)
        out = out.view(-1, self.nChannels)
        f4 = out
        out = self.fc(out)
        if is_feat:
            if preact:
                f1 = self.block2.layer[0].bn1(f1)
                f2 = self.block3.layer[0].bn1(f2)
                f3 = self.bn1(f3)
            return [f0, f1, f2, f3, f4], out
        return out


# --------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope='module')
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize(model):
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def original(arch):
    torch.manual_seed(0)
    if arch == 'resnet20':
        return _randomize(OrigResNet(20, [16, 16, 32, 64]))
    if arch == 'resnet8x4':
        return _randomize(OrigResNet(8, [32, 64, 128, 256]))
    assert arch == 'wrn_16_1'
    return _randomize(OrigWRN(16, 100, widen_factor=1))


def build_ours(arch, state_dict):
    init_default_scope('mmpretrain')
    model = MODELS.build(
        build_model_cfg(arch, state_dict['head.fc.weight'].shape[0]))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def hooked_features(model, preact, x):
    backbone = model.backbone
    modules = dict(backbone.named_modules())
    points = backbone.review_feature_points(preact)
    store = []
    handles = [
        modules[name].register_forward_hook(
            lambda m, i, o, relu=relu: store.append(F.relu(o) if relu else o))
        for name, relu in points
    ]
    with torch.no_grad():
        logits = model(x, mode='tensor')
    for h in handles:
        h.remove()
    return store, logits


@pytest.mark.parametrize('arch', ['resnet20', 'resnet8x4', 'wrn_16_1'])
def test_converted_model_reproduces_original(arch):
    orig = original(arch)
    ckpt = convert_repdistiller_checkpoint({'model': orig.state_dict()},
                                           arch)
    assert set(ckpt) == {'meta', 'state_dict'}
    assert ckpt['meta']['arch'] == arch
    assert ckpt['meta']['num_classes'] == 100
    ours = build_ours(arch, ckpt['state_dict'])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = orig(x)
    # the distiller's readings equal RepDistiller's is_feat features
    for preact in (True, False):
        feats, logits = hooked_features(ours, preact, x)
        with torch.no_grad():
            orig_feats, _ = orig(x, is_feat=True, preact=preact)
        assert len(feats) == 3
        for ours_f, orig_f in zip(feats, orig_feats[1:4]):
            assert ours_f.shape == orig_f.shape
            torch.testing.assert_close(ours_f, orig_f, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        # the pooled level: GAP of the final activated map
        pooled = F.adaptive_avg_pool2d(ours.backbone(x)[-1], 1).flatten(1)
        torch.testing.assert_close(
            pooled, orig_feats[4], rtol=1e-5, atol=1e-5)


def test_checkpoint_layouts_and_prefixes():
    orig = original('resnet20')
    sd = orig.state_dict()
    reference = convert_repdistiller_checkpoint(sd, 'resnet20')['state_dict']
    layouts = [
        {'state_dict': sd},
        {'model': sd, 'epoch': 240, 'best_acc': torch.tensor(69.1),
         'optimizer': {'state': {}}},
        {f'module.{k}': v for k, v in sd.items()},
    ]
    for ckpt in layouts:
        got = convert_repdistiller_checkpoint(ckpt, 'resnet20')
        assert list(got['state_dict']) == list(reference)
        for k, v in reference.items():
            assert torch.equal(got['state_dict'][k], v)
    assert convert_repdistiller_checkpoint(
        layouts[1], 'resnet20')['meta']['source_epoch'] == 240
    # a ReviewKD distillation checkpoint: student weights + ABFs
    reviewkd = {f'student.{k}': v for k, v in sd.items()}
    reviewkd['abfs.0.conv1.0.weight'] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(CheckpointConversionError, match="prefix 'student.'"):
        convert_repdistiller_checkpoint(reviewkd, 'resnet20')
    got = convert_repdistiller_checkpoint(reviewkd, 'resnet20', 'student.')
    assert torch.equal(got['state_dict']['head.fc.weight'], sd['fc.weight'])


def test_wrn_keys_are_renamed():
    sd = original('wrn_16_1').state_dict()
    out = convert_repdistiller_state_dict(sd, 'wrn-16-1')
    assert torch.equal(out['backbone.block2.0.shortcut.weight'],
                       sd['block2.layer.0.convShortcut.weight'])
    assert torch.equal(out['backbone.bn1.running_var'], sd['bn1.running_var'])
    assert torch.equal(out['head.fc.bias'], sd['fc.bias'])
    assert not any('layer.' in k or 'convShortcut' in k for k in out)


def test_missing_num_batches_tracked_is_filled():
    sd = {
        k: v
        for k, v in original('resnet20').state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    out = convert_repdistiller_state_dict(sd, 'resnet20')
    assert out['backbone.bn1.num_batches_tracked'].item() == 0
    build_ours('resnet20', out)


def test_unmapped_keys_raise_one_clear_line():
    sd = dict(original('resnet20').state_dict())
    sd['foo.weight'] = torch.zeros(3)
    sd['layer4.0.conv1.weight'] = torch.zeros(3)
    with pytest.raises(CheckpointConversionError) as err:
        convert_repdistiller_state_dict(sd, 'resnet20')
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('2 checkpoint key(s) do not map to resnet20: ')
    assert 'foo.weight' in msg and 'layer4.0.conv1.weight' in msg
    # a WRN checkpoint given as a ResNet: names the first unmapped keys
    with pytest.raises(CheckpointConversionError,
                       match=r'do not map to resnet20: block1\.layer\.0'):
        convert_repdistiller_state_dict(original('wrn_16_1').state_dict(),
                                        'resnet20')


def test_missing_and_mismatched_keys_raise():
    sd = dict(original('resnet20').state_dict())
    del sd['layer3.2.bn2.weight']
    with pytest.raises(CheckpointConversionError,
                       match=r'missing from the checkpoint: '
                       r'backbone\.layer3\.2\.bn2\.weight'):
        convert_repdistiller_state_dict(sd, 'resnet20')
    sd = dict(original('resnet20').state_dict())
    sd['layer1.0.conv1.weight'] = torch.zeros(16, 16, 1, 1)
    with pytest.raises(
            CheckpointConversionError,
            match=r'shape mismatch for resnet20: backbone\.layer1\.0\.conv1'
            r'\.weight \(16, 16, 1, 1\) != \(16, 16, 3, 3\)'):
        convert_repdistiller_state_dict(sd, 'resnet20')
    with pytest.raises(CheckpointConversionError, match='unknown arch'):
        canonical_arch('resnet18')


def test_arch_names():
    assert canonical_arch('wrn-40-2') == 'wrn_40_2'
    assert canonical_arch('vgg13_bn') == 'vgg13'
    assert canonical_arch('mobile_half') == 'MobileNetV2'
    assert canonical_arch('shufflev2') == 'ShuffleV2'
    assert canonical_arch('resnet32x4') == 'resnet32x4'


def _load_tool():
    spec = importlib.util.spec_from_file_location('repdistiller_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli(tmp_path, capsys):
    tool = _load_tool()
    orig = original('resnet20')
    src, dst = tmp_path / 'ckpt_epoch_240.pth', tmp_path / 'resnet20.pth'
    torch.save({'epoch': 240, 'model': orig.state_dict()}, src)
    assert tool.main([str(src), str(dst), '--arch', 'resnet20']) == 0
    assert 'converted' in capsys.readouterr().out
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['model']['backbone'] == dict(
        type='mmreviewkd.CifarResNet', depth=20)
    ours = build_ours('resnet20', ckpt['state_dict'])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x, mode='tensor'), orig(x), rtol=1e-5, atol=1e-5)

    # a wrong arch fails with one line on stderr and exit code 1
    assert tool.main([str(src), str(tmp_path / 'x.pth'), '--arch',
                      'wrn_16_1']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('error: ')
    assert 'do not map to wrn_16_1: layer1.0.conv1.weight' in err
    assert not (tmp_path / 'x.pth').exists()
