# Copyright (c) mmreviewkd contributors. All rights reserved.
"""MobileNetV2 for CIFAR of the CRD / RepDistiller model zoo.

The CRD student "MobileNetV2" is ``mobile_half``: expansion 6, width x0.5.
Names match RepDistiller's ``models/mobilenetv2.py`` (``conv1.0``,
``blocks.i.j.conv.k``, ``conv2.0``); its ``classifier.0`` becomes ``head.fc``.
"""
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from torch import Tensor

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .cifar_resnet import (CIFAR_INIT_CFG, FreezableBackbone,
                           depthwise_conv3x3, make_stage)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int,
                  stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class CifarInvertedResidual(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 linear.

    Unlike torchvision's block, the 1x1 expansion conv exists even when the
    expansion ratio is 1 (as in the original).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the depthwise conv, 1 or 2.
        expand_ratio (int): Channel expansion of the hidden layer.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f'stride must be 1 or 2, got {stride}')
        hidden = in_channels * expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            depthwise_conv3x3(hidden, stride),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


@MODELS.register_module()
class CifarMobileNetV2(FreezableBackbone):
    """MobileNetV2 for 32x32 inputs (RepDistiller ``mobilenetv2_T_w``).

    A stride-2 3x3 stem, seven stages of inverted residual blocks
    (``blocks.0``..``blocks.6``; channels ``(16, 24, 32, 64, 96, 160, 320)``
    times ``widen_factor``, strides 1, 1, 2, 2, 1, 2, 1) and a 1x1 conv + BN +
    ReLU to ``1280`` channels (``int(1280 * widen_factor)`` if the factor is
    above 1). At x0.5 a 32x32 input gives 12 ch @ 16x16 (blocks.1),
    16 @ 8x8 (blocks.2), 48 @ 4x4 (blocks.4), 160 @ 2x2 (blocks.6) and
    1280 @ 2x2 (conv2).

    Outputs (``out_indices``): 0-6 are the stage outputs, 7 is the ``conv2``
    output the original classifier pools.

    Args:
        widen_factor (float): Width multiplier. Defaults to 0.5
            (``mobile_half``).
        expand_ratio (int): Expansion of stages 1-6 (stage 0 uses 1).
            Defaults to 6.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Outputs to return, 0-7.
            Defaults to (7, ).
        frozen_stages (int): Freeze the stem (0) and stages 0..k-1 (k); 8
            also freezes ``conv2``. -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. The
            default reproduces the original: conv weights
            ``N(0, 2 / (k * k * out_channels))``, BN weight 1 / bias 0.
    """
    # channels, num_blocks, stride (expansion: 1 for the first stage)
    arch_settings = [[16, 1, 1], [24, 2, 1], [32, 3, 2], [64, 4, 2],
                     [96, 3, 1], [160, 3, 2], [320, 1, 1]]
    num_stages = len(arch_settings)

    def __init__(self,
                 widen_factor: float = 0.5,
                 expand_ratio: int = 6,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (7, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = (
                     CIFAR_INIT_CFG)
                 ) -> None:
        super().__init__(out_indices, self.num_stages + 1, frozen_stages,
                         norm_eval, init_cfg)
        self.widen_factor = widen_factor

        channels = int(32 * widen_factor)
        self.conv1 = _conv_bn_relu(in_channels, channels, 3, stride=2)
        self.blocks = nn.ModuleList()
        stage_channels = []
        for i, (c, n, s) in enumerate(self.arch_settings):
            out_channels = int(c * widen_factor)
            block = partial(
                CifarInvertedResidual,
                expand_ratio=1 if i == 0 else expand_ratio)
            self.blocks.append(make_stage(block, channels, out_channels, n, s))
            channels = out_channels
            stage_channels.append(out_channels)
        self.out_channels = int(
            1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, self.out_channels, 1, stride=1)
        self.stage_channels = tuple(stage_channels) + (self.out_channels, )
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self._forward_stages(self.conv1(x), self.blocks, self.conv2)

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """The outputs of ``blocks.1``, ``blocks.2``, ``blocks.4`` and
        ``blocks.6`` (linear bottlenecks, so pre- and post-activation are the
        same), as RepDistiller's f1-f4."""
        return [(f'blocks.{i}', False) for i in (1, 2, 4, 6)]

    def _freeze_stages(self) -> None:
        self._freeze([self.conv1], self.blocks, head=[self.conv2])
