# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ShuffleNetV2 for CIFAR of the CRD / RepDistiller model zoo ("ShuffleV2").

Names match RepDistiller's ``models/ShuffleNetv2.py``; its ``linear`` becomes
``head.fc``.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import channel_shuffle
from torch import Tensor

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .cifar_resnet import LayerStagesBackbone, depthwise_conv3x3


class ShuffleV2DownBlock(nn.Module):
    """Stride-2 ShuffleNetV2 unit: two branches, concatenated and shuffled.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (half per branch).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid_channels = out_channels // 2
        # left branch: 3x3 depthwise (stride 2) -> 1x1
        self.conv1 = depthwise_conv3x3(in_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        # right branch: 1x1 -> 3x3 depthwise (stride 2) -> 1x1
        self.conv3 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid_channels)
        self.conv4 = depthwise_conv3x3(mid_channels, stride=2)
        self.bn4 = nn.BatchNorm2d(mid_channels)
        self.conv5 = nn.Conv2d(mid_channels, mid_channels, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid_channels)

    def forward(self, x: Tensor) -> Tensor:
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleV2BasicBlock(nn.Module):
    """Stride-1 ShuffleNetV2 unit: split, transform one half, concat, shuffle.

    With ``with_preact_tap`` the block also builds the original's
    pre-activation feature, ``cat([x1, bn3 output])`` (before the ReLU and
    before the shuffle), and passes it through the ``preact`` tap; the
    original only returns it from the last unit of a stage.

    Args:
        in_channels (int): Input (= output) channels.
        split_ratio (float): Fraction of channels passed through unchanged.
            Defaults to 0.5.
        with_preact_tap (bool): Build the ``preact`` tap. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 split_ratio: float = 0.5,
                 with_preact_tap: bool = False) -> None:
        super().__init__()
        self.split_ratio = split_ratio
        channels = int(in_channels * split_ratio)
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = depthwise_conv3x3(channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.preact: Optional[nn.Identity] = (
            nn.Identity() if with_preact_tap else None)

    def forward(self, x: Tensor) -> Tensor:
        c = int(x.size(1) * self.split_ratio)
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.preact is not None:
            self.preact(torch.cat([x1, out], 1))
        out = torch.cat([x1, F.relu(out)], 1)
        return channel_shuffle(out, 2)


@MODELS.register_module()
class CifarShuffleNetV2(LayerStagesBackbone):
    """ShuffleNetV2 for 32x32 inputs (RepDistiller ``ShuffleV2``).

    A 1x1 stem conv to 24 channels (stride 1) + BN + ReLU, three stages (a
    stride-2 down unit + ``num_blocks`` basic units) and a final 1x1 conv +
    BN + ReLU. With ``net_size=1`` a 32x32 input gives 116 @ 16x16,
    232 @ 8x8, 464 @ 4x4 and 1024 @ 4x4.

    Outputs (``out_indices``): 0-2 are the stage outputs, 3 is the final
    ``relu(bn2(conv2))`` the original classifier pools.

    The pre-activation ReviewKD features (the ``preact`` taps) are not
    shuffled, so their channel order differs from the post-activation ones.

    Args:
        net_size (float): 0.2, 0.3, 0.5, 1, 1.5 or 2. Defaults to 1.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Outputs to return, 0-3.
            Defaults to (3, ).
        frozen_stages (int): Freeze the stem (0) and stages 1..k (k); 4 also
            freezes the final ``conv2`` and ``bn2``. -1 freezes nothing.
            Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None (PyTorch's default initialisation, as in the
            original).
    """
    # net_size: (stage channels + final conv channels, basic units per stage)
    arch_settings = {
        0.2: ((40, 80, 160, 512), (3, 3, 3)),
        0.3: ((40, 80, 160, 512), (3, 7, 3)),
        0.5: ((48, 96, 192, 1024), (3, 7, 3)),
        1: ((116, 232, 464, 1024), (3, 7, 3)),
        1.5: ((176, 352, 704, 1024), (3, 7, 3)),
        2: ((224, 488, 976, 2048), (3, 7, 3)),
    }
    num_stages = 3

    def __init__(self,
                 net_size: float = 1,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if net_size not in self.arch_settings:
            raise ConfigError(f'CifarShuffleNetV2 net_size must be one of '
                              f'{sorted(self.arch_settings)}, got {net_size}')
        super().__init__(out_indices, self.num_stages + 1, frozen_stages,
                         norm_eval, init_cfg)
        channels_cfg, num_blocks = self.arch_settings[net_size]
        self.net_size = net_size
        self.num_blocks = num_blocks
        self.stage_channels = tuple(channels_cfg[:self.num_stages])
        self.out_channels = channels_cfg[-1]

        self.conv1 = nn.Conv2d(in_channels, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        channels = 24
        for i, (out_channels, n) in enumerate(zip(self.stage_channels,
                                                  num_blocks)):
            units: List[nn.Module] = [
                ShuffleV2DownBlock(channels, out_channels)
            ]
            for j in range(n):
                units.append(
                    ShuffleV2BasicBlock(
                        out_channels, with_preact_tap=j == n - 1))
            channels = out_channels
            self.add_module(f'layer{i + 1}', nn.Sequential(*units))
        self.conv2 = nn.Conv2d(channels, self.out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(self.out_channels)
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self._forward_stages(
            self._stem(x), self._stages(),
            lambda out: F.relu(self.bn2(self.conv2(out))))

    def _freeze_stages(self) -> None:
        self._freeze([self.conv1, self.bn1],
                     self._stages(),
                     head=[self.conv2, self.bn2])
