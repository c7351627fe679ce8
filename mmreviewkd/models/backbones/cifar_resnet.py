# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ResNets for CIFAR of the CRD / RepDistiller model zoo.

resnet8/14/20/32/44/56/110 use 16-16-32-64 channels (stem, stages 1-3);
resnet8x4 and resnet32x4 use 32-64-128-256. Parameter and buffer names match
RepDistiller's ``models/resnet.py`` so its checkpoints load after adding the
``backbone.`` prefix (see ``tools/model_converters/``).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmreviewkd.registry import MODELS


#: The CRD/RepDistiller initialisation shared by the CIFAR backbones:
#: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0 (BaseModule copies
#: it, so sharing the default is safe).
CIFAR_INIT_CFG = [
    dict(
        type='Kaiming',
        layer='Conv2d',
        mode='fan_out',
        nonlinearity='relu',
        distribution='normal'),
    dict(type='Constant', val=1, layer=['_BatchNorm'])
]


def normalize_out_indices(out_indices: Union[int, Sequence[int]],
                          num_outputs: int, owner: str) -> Tuple[int, ...]:
    """Check ``out_indices`` and turn negative entries into positive ones.

    Shared by the backbones of this package.
    """
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    result = []
    for index in out_indices:
        if not -num_outputs <= index < num_outputs:
            raise ValueError(f'{owner}: out_indices entry {index} is out of '
                             f'range [{-num_outputs}, {num_outputs - 1}]')
        result.append(index % num_outputs)
    return tuple(result)


def freeze_modules(modules: Sequence[nn.Module]) -> None:
    """Put ``modules`` in eval mode and stop their parameters' gradients."""
    for m in modules:
        m.eval()
        for param in m.parameters():
            param.requires_grad = False


def set_norm_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer under ``module`` in eval mode."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


class FreezableBackbone(BaseBackbone):
    """Base of this package's backbones: ``train()`` re-applies
    ``frozen_stages`` (through the subclass's ``_freeze_stages``) and, with
    ``norm_eval``, puts every BatchNorm layer back in eval mode.

    Subclasses set ``frozen_stages`` and ``norm_eval`` and implement
    ``_freeze_stages``.
    """

    frozen_stages: int
    norm_eval: bool

    def _freeze_stages(self) -> None:
        raise NotImplementedError

    def train(self, mode: bool = True) -> 'FreezableBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self


class CifarBasicBlock(nn.Module):
    """The post-activation basic block of the CIFAR ResNets.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``. The residual
    sum passes through the ``preact`` tap (an ``nn.Identity``) before a
    non-inplace ReLU, so a forward hook on ``preact`` sees the pre-activation
    feature and nothing modifies it afterwards.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first 3x3 conv and of the shortcut.
            Defaults to 1.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1,
            bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(
                    in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.preact = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        out = self.preact(out + identity)
        return F.relu(out)


@MODELS.register_module()
class CifarResNet(FreezableBackbone):
    """ResNet for 32x32 inputs, as in CRD / RepDistiller.

    A 3x3 stem conv (stride 1) + BN + ReLU, then three stages of
    ``(depth - 2) / 6`` basic blocks with ``base_channels * (1, 2, 4)``
    channels at strides 1, 2, 2.

    ==========  =====  =============  =============
    arch        depth  stem_channels  base_channels
    ==========  =====  =============  =============
    resnet20    20     16             16
    resnet8x4   8      32             64
    resnet32x4  32     32             64
    ==========  =====  =============  =============

    Args:
        depth (int): 6n + 2, e.g. 8, 14, 20, 32, 44, 56, 110. Defaults to 20.
        stem_channels (int): Output channels of the stem conv. Defaults to 16.
        base_channels (int): Channels of the first stage. Defaults to 16.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output, 0-2 (negative indices
            count from the end). Index 2 is the post-ReLU output of the last
            stage, the map the original classifier average-pools.
            Defaults to (2, ).
        frozen_stages (int): Freeze the stem (0) and stages 1..k (k), i.e.
            eval mode and no gradient. -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. The
            default reproduces the original: Kaiming-normal (fan_out) convs,
            BN weight 1 / bias 0.
    """
    num_stages = 3

    def __init__(self,
                 depth: int = 20,
                 stem_channels: int = 16,
                 base_channels: int = 16,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = (
                     CIFAR_INIT_CFG)
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f'CifarResNet depth must be 6n+2 with n >= 1, got {depth}')
        self.depth = depth
        self.num_blocks = (depth - 2) // 6
        self.out_indices = normalize_out_indices(out_indices,
                                                 self.num_stages,
                                                 type(self).__name__)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.stage_channels = tuple(base_channels * 2**i
                                    for i in range(self.num_stages))

        self.conv1 = nn.Conv2d(
            in_channels, stem_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        channels = stem_channels
        for i, out_channels in enumerate(self.stage_channels):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(self.num_blocks):
                blocks.append(
                    CifarBasicBlock(channels, out_channels,
                                    stride if j == 0 else 1))
                channels = out_channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.relu(self.bn1(self.conv1(x)))
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """Where ReviewKD's stage features are read, shallow to deep, pooled
        level excluded.

        Each item is ``(name, relu)``: ``name`` is a submodule path relative to
        the backbone (as in ``named_modules()``) whose forward OUTPUT is the
        feature; ``relu=True`` means the reader applies a non-inplace
        ``F.relu`` to that output.

        Post-activation: each stage's output. Pre-activation: the residual sum
        of the stage's last block before its ReLU (RepDistiller
        ``preact=True``).
        """
        last = self.num_blocks - 1
        if preact:
            return [(f'layer{i + 1}.{last}.preact', False)
                    for i in range(self.num_stages)]
        return [(f'layer{i + 1}', False) for i in range(self.num_stages)]

    def _freeze_stages(self) -> None:
        modules = [self.conv1, self.bn1] if self.frozen_stages >= 0 else []
        for i in range(1, min(self.frozen_stages, self.num_stages) + 1):
            modules.append(getattr(self, f'layer{i}'))
        freeze_modules(modules)
