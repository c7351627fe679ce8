# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Convert CRD / RepDistiller, mdistiller and ReviewKD checkpoints to ours.

The result is an mmpretrain ``ImageClassifier`` checkpoint,
``{'meta': {...}, 'state_dict': {'backbone.*': ..., 'head.fc.*': ...}}``, for
``ImageClassifier(backbone=<ours>, neck=GlobalAveragePooling,
head=LinearClsHead)``; ``meta['model']`` holds that model config. Every source
key must map onto a key of our model with the same shape and every key of our
model must be filled, otherwise :class:`CheckpointConversionError` names the
first offending keys. The command-line tool is
``tools/model_converters/repdistiller_to_mmreviewkd.py``.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from mmreviewkd.utils.errors import UserError

# (pattern, replacement) applied in order to each source key of a family,
# before the ``backbone.`` prefix is added; head keys are matched first.
_HEAD_RULES: Dict[str, str] = {
    'resnet': r'^fc\.',
    'wrn': r'^fc\.',
    'vgg': r'^classifier\.',
    'mobilenetv2': r'^classifier\.0\.',
    'shufflenet': r'^linear\.',
    'mobilenet_v1': r'^fc\.',
}
_BACKBONE_RULES: Dict[str, List[Tuple[str, str]]] = {
    'resnet': [],
    'wrn': [(r'^(block\d+)\.layer\.', r'\1.'),
            (r'\.convShortcut\.', '.shortcut.')],
    'vgg': [],
    'mobilenetv2': [],
    'shufflenet': [],
    'mobilenet_v1': [(r'^model\.', 'layers.')],
}


def _arch(family: str, backbone_type: str, head_in_channels: int,
          **kwargs) -> dict:
    return dict(
        family=family,
        backbone=dict(type=backbone_type, **kwargs),
        head_in_channels=head_in_channels)


#: Architectures the converter knows, by their RepDistiller names.
REPDISTILLER_ARCHS: Dict[str, dict] = {
    **{
        f'resnet{d}': _arch('resnet', 'CifarResNet', 64, depth=d)
        for d in (8, 14, 20, 32, 44, 56, 110)
    },
    **{
        f'resnet{d}x4': _arch(
            'resnet',
            'CifarResNet',
            256,
            depth=d,
            stem_channels=32,
            base_channels=64)
        for d in (8, 32)
    },
    **{
        f'wrn_{d}_{k}': _arch(
            'wrn', 'CifarWRN', 64 * k, depth=d, widen_factor=k)
        for d in (16, 40) for k in (1, 2)
    },
    **{
        f'vgg{d}': _arch('vgg', 'CifarVGG', 512, depth=d)
        for d in (8, 11, 13, 16, 19)
    },
    'MobileNetV2':
    _arch('mobilenetv2', 'CifarMobileNetV2', 1280, widen_factor=0.5),
    'ShuffleV1':
    _arch('shufflenet', 'CifarShuffleNetV1', 960, groups=3),
    'ShuffleV2':
    _arch('shufflenet', 'CifarShuffleNetV2', 1024, net_size=1),
    # ReviewKD's ImageNet student (ImageNet/models/mobilenet.py)
    'mobilenet_v1':
    _arch('mobilenet_v1', 'MobileNetV1', 1024),
}

# Other spellings used by RepDistiller, mdistiller and ReviewKD scripts.
_ALIASES = {
    **{f'vgg{d}_bn': f'vgg{d}'
       for d in (8, 11, 13, 16, 19)},
    'mobilenetv2': 'MobileNetV2',
    'mobile_half': 'MobileNetV2',
    'shufflev1': 'ShuffleV1',
    'shufflev2': 'ShuffleV2',
    'mobilenet': 'mobilenet_v1',
    'mobilenetv1': 'mobilenet_v1',
}


class CheckpointConversionError(UserError, ValueError):
    """A checkpoint does not map onto the requested architecture."""


def canonical_arch(arch: str) -> str:
    """Map a RepDistiller / mdistiller / ReviewKD model name (``wrn-40-2``,
    ``vgg13_bn``, ``mobile_half``, ...) to a key of
    :data:`REPDISTILLER_ARCHS`."""
    if arch in REPDISTILLER_ARCHS:
        return arch
    key = arch.lower().replace('-', '_')
    lowered = {name.lower(): name for name in REPDISTILLER_ARCHS}
    if key in lowered:
        return lowered[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise CheckpointConversionError(
        f'unknown arch {arch!r}; known: {", ".join(REPDISTILLER_ARCHS)}')


def _backbone_class(name: str):
    from . import (CifarMobileNetV2, CifarResNet, CifarShuffleNetV1,
                   CifarShuffleNetV2, CifarVGG, CifarWRN, MobileNetV1)
    return {
        cls.__name__: cls
        for cls in (CifarResNet, CifarWRN, CifarVGG, CifarMobileNetV2,
                    CifarShuffleNetV1, CifarShuffleNetV2, MobileNetV1)
    }[name]


def build_model_cfg(arch: str, num_classes: int) -> dict:
    """The ``ImageClassifier`` config that a converted checkpoint loads into.

    Args:
        arch (str): Architecture name, see :func:`canonical_arch`.
        num_classes (int): Classes of the linear head.

    Returns:
        dict: Model config using ``mmreviewkd.``-scoped backbone types.
    """
    spec = REPDISTILLER_ARCHS[canonical_arch(arch)]
    backbone = dict(spec['backbone'])
    backbone['type'] = 'mmreviewkd.' + backbone['type']
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=spec['head_in_channels'],
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))


def _expected_shapes(arch: str, num_classes: int) -> Dict[str, torch.Size]:
    """Shapes of every key our classifier's state_dict has."""
    spec = REPDISTILLER_ARCHS[arch]
    kwargs = {k: v for k, v in spec['backbone'].items() if k != 'type'}
    with torch.device('meta'):
        backbone = _backbone_class(spec['backbone']['type'])(**kwargs)
    shapes = OrderedDict(
        (f'backbone.{k}', v.shape) for k, v in backbone.state_dict().items())
    shapes['head.fc.weight'] = torch.Size(
        [num_classes, spec['head_in_channels']])
    shapes['head.fc.bias'] = torch.Size([num_classes])
    return shapes


def extract_state_dict(checkpoint: Mapping,
                       prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Find the model weights in a loaded checkpoint.

    Accepts a plain state_dict, ``{'model': state_dict, ...}`` (RepDistiller,
    mdistiller) or ``{'state_dict': state_dict, ...}``. A ``module.`` prefix
    on every key (DataParallel) is removed.

    Args:
        checkpoint (Mapping): The object ``torch.load`` returned.
        prefix (str, optional): Keep only the keys under this prefix and
            strip it, e.g. ``'student.'`` for a ReviewKD distillation
            checkpoint (whose ``abfs.*`` are then dropped).

    Returns:
        dict: Key -> tensor.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointConversionError(
            f'checkpoint is a {type(checkpoint).__name__}, not a dict')
    state_dict = checkpoint
    for field in ('state_dict', 'model'):
        if isinstance(checkpoint.get(field), Mapping):
            state_dict = checkpoint[field]
            break
    not_tensors = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if not_tensors:
        raise CheckpointConversionError(
            'cannot find a state_dict in the checkpoint (top-level keys: '
            f'{", ".join(map(str, list(checkpoint)[:8]))})')
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if prefix:
        state_dict = {
            k[len(prefix):]: v
            for k, v in state_dict.items() if k.startswith(prefix)
        }
        if not state_dict:
            raise CheckpointConversionError(
                f'no checkpoint key starts with prefix {prefix!r}')
    return state_dict


def _first(items: List[str], limit: int = 5) -> str:
    more = f' (+{len(items) - limit} more)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def convert_repdistiller_state_dict(state_dict: Mapping[str, Tensor],
                                    arch: str) -> 'OrderedDict[str, Tensor]':
    """Rename an original state_dict to our ``ImageClassifier`` keys.

    Args:
        state_dict (Mapping[str, Tensor]): Keys as in the original model
            definition (RepDistiller ``models/``, ReviewKD ``model/``).
        arch (str): Architecture name, see :func:`canonical_arch`.

    Returns:
        OrderedDict: ``backbone.*`` and ``head.fc.*`` keys, in our model's
        order. Missing BatchNorm ``num_batches_tracked`` buffers (old PyTorch
        checkpoints) are filled with 0.

    Raises:
        CheckpointConversionError: If a key does not map, a key of our model
            is left unfilled, or a shape differs; the message names the first
            offending keys.
    """
    arch = canonical_arch(arch)
    family = REPDISTILLER_ARCHS[arch]['family']
    head_pattern = re.compile(_HEAD_RULES[family])
    renamed: Dict[str, str] = {}
    for key in state_dict:
        if head_pattern.match(key):
            new_key = head_pattern.sub('head.fc.', key)
        else:
            new_key = key
            for pattern, repl in _BACKBONE_RULES[family]:
                new_key = re.sub(pattern, repl, new_key)
            new_key = 'backbone.' + new_key
        renamed[key] = new_key

    hint = ''
    if any(k.startswith(('student.', 'abfs.')) for k in state_dict):
        hint = " (a ReviewKD distillation checkpoint? use prefix 'student.')"
    fc_key = next((k for k, v in renamed.items() if v == 'head.fc.weight'),
                  None)
    if fc_key is None:
        raise CheckpointConversionError(
            f'no classifier weight found for {arch} (expected a key matching '
            f'{_HEAD_RULES[family]}weight){hint}')
    num_classes = state_dict[fc_key].shape[0]
    expected = _expected_shapes(arch, num_classes)

    unmapped = [k for k, v in renamed.items() if v not in expected]
    if unmapped:
        raise CheckpointConversionError(
            f'{len(unmapped)} checkpoint key(s) do not map to {arch}: '
            f'{_first(unmapped)}{hint}')
    targets = list(renamed.values())
    duplicates = sorted({k for k in targets if targets.count(k) > 1})
    if duplicates:
        raise CheckpointConversionError(
            f'several checkpoint keys map to {_first(duplicates)}')

    converted = {renamed[k]: v for k, v in state_dict.items()}
    missing = []
    for key in expected:
        if key not in converted:
            if key.endswith('.num_batches_tracked'):
                converted[key] = torch.tensor(0, dtype=torch.long)
            else:
                missing.append(key)
    if missing:
        raise CheckpointConversionError(
            f'{len(missing)} key(s) of {arch} are missing from the '
            f'checkpoint: {_first(missing)}')
    wrong = [
        f'{k} {tuple(converted[k].shape)} != {tuple(shape)}'
        for k, shape in expected.items() if converted[k].shape != shape
    ]
    if wrong:
        raise CheckpointConversionError(
            f'shape mismatch for {arch}: {_first(wrong, 3)}')
    return OrderedDict((k, converted[k]) for k in expected)


def convert_repdistiller_checkpoint(checkpoint: Mapping,
                                    arch: str,
                                    prefix: Optional[str] = None) -> dict:
    """Convert a loaded original checkpoint into an mmpretrain checkpoint.

    Args:
        checkpoint (Mapping): What ``torch.load`` returned: a state_dict,
            ``{'model': state_dict}`` or ``{'state_dict': state_dict}``.
        arch (str): Architecture name, see :func:`canonical_arch`.
        prefix (str, optional): See :func:`extract_state_dict`.

    Returns:
        dict: ``{'meta': {...}, 'state_dict': {...}}``; ``meta['model']`` is
        the ``ImageClassifier`` config the weights belong to.
    """
    arch = canonical_arch(arch)
    state_dict = convert_repdistiller_state_dict(
        extract_state_dict(checkpoint, prefix), arch)
    num_classes = state_dict['head.fc.weight'].shape[0]
    meta = dict(
        arch=arch,
        converted_by='repdistiller_to_mmreviewkd',
        num_classes=num_classes,
        model=build_model_cfg(arch, num_classes))
    for field in ('epoch', 'best_acc', 'accuracy'):
        value = checkpoint.get(field)
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)):
            meta[f'source_{field}'] = value
    return dict(meta=meta, state_dict=state_dict)
