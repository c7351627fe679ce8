# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ShuffleNetV1 for CIFAR of the CRD / RepDistiller model zoo ("ShuffleV1").

Names match RepDistiller's ``models/ShuffleNetv1.py``; its ``linear`` becomes
``head.fc``.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import channel_shuffle
from torch import Tensor

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .cifar_resnet import LayerStagesBackbone, depthwise_conv3x3


class ShuffleV1Bottleneck(nn.Module):
    """ShuffleNetV1 unit: grouped 1x1, shuffle, 3x3 depthwise, grouped 1x1.

    Stride 2 concatenates a 3x3 average-pooled shortcut (so ``out_channels``
    excludes the input channels); stride 1 adds the input. The concat / sum
    passes through the ``preact`` tap before a non-inplace ReLU.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Channels of the residual branch.
        stride (int): 1 or 2.
        groups (int): Groups of the 1x1 convs.
        group_conv1 (bool): Whether the first 1x1 conv is grouped (the
            original does not group it in the network's first unit).
            Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 groups: int,
                 group_conv1: bool = True) -> None:
        super().__init__()
        self.stride = stride
        mid_channels = out_channels // 4
        self.conv1_groups = groups if group_conv1 else 1
        self.conv1 = nn.Conv2d(
            in_channels,
            mid_channels,
            1,
            groups=self.conv1_groups,
            bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = depthwise_conv3x3(mid_channels, stride)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(
            mid_channels, out_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: Optional[nn.AvgPool2d] = None
        if stride == 2:
            self.shortcut = nn.AvgPool2d(3, stride=2, padding=1)
        self.preact = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.conv1_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = torch.cat([out, self.shortcut(x)], 1)
        else:
            out = out + x
        return F.relu(self.preact(out))


@MODELS.register_module()
class CifarShuffleNetV1(LayerStagesBackbone):
    """ShuffleNetV1 for 32x32 inputs (RepDistiller ``ShuffleV1``).

    A 1x1 stem conv to 24 channels (stride 1) + BN + ReLU, then three stages
    whose first unit has stride 2. With the default g=3 settings a 32x32 input
    gives 240 @ 16x16, 480 @ 8x8 and 960 @ 4x4.

    Outputs (``out_indices``): the post-ReLU stage outputs 0-2; 2 is the map
    the original classifier pools.

    Args:
        groups (int): Groups of the 1x1 convs. Defaults to 3.
        stage_channels (Sequence[int]): Output channels of the three stages.
            Defaults to (240, 480, 960), the g=3 setting.
        num_blocks (Sequence[int]): Units per stage. Defaults to (4, 8, 4).
        stem_channels (int): Stem output channels. Defaults to 24.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Outputs to return, 0-2.
            Defaults to (2, ).
        frozen_stages (int): Freeze the stem (0) and stages 1..k (k).
            -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None (PyTorch's default initialisation, as in the
            original).
    """

    def __init__(self,
                 groups: int = 3,
                 stage_channels: Sequence[int] = (240, 480, 960),
                 num_blocks: Sequence[int] = (4, 8, 4),
                 stem_channels: int = 24,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if len(stage_channels) != len(num_blocks):
            raise ConfigError('stage_channels and num_blocks must have the '
                              'same length')
        super().__init__(out_indices, len(stage_channels), frozen_stages,
                         norm_eval, init_cfg)
        self.groups = groups
        self.stage_channels = tuple(stage_channels)
        self.num_blocks = tuple(num_blocks)
        self.num_stages = len(self.stage_channels)

        self.conv1 = nn.Conv2d(in_channels, stem_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        channels = stem_channels
        for i, (out_channels, n) in enumerate(zip(stage_channels,
                                                  num_blocks)):
            units = []
            for j in range(n):
                if j == 0:
                    units.append(
                        ShuffleV1Bottleneck(
                            channels,
                            out_channels - channels,
                            stride=2,
                            groups=groups,
                            group_conv1=i > 0))
                else:
                    units.append(
                        ShuffleV1Bottleneck(
                            out_channels, out_channels, 1, groups=groups))
                channels = out_channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*units))
        self._freeze_stages()
