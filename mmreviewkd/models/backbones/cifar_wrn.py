# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Wide ResNets (WRN-d-k) for CIFAR of the CRD / RepDistiller model zoo.

Names follow RepDistiller's ``models/wrn.py`` except that the per-stage
``NetworkBlock`` wrapper is gone (``block1.layer.0`` -> ``block1.0``) and
``convShortcut`` is called ``shortcut``; the converter maps both.
"""
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .cifar_resnet import (CIFAR_INIT_CFG, FreezableBackbone, conv3x3,
                           make_stage)


class WideBasicBlock(nn.Module):
    """The pre-activation basic block of Wide ResNets.

    ``act = relu1(bn1(x))``, ``out = conv2(relu2(bn2(conv1(act))))`` and the
    block returns ``out + x`` (equal channels) or ``out + shortcut(act)``.
    ``relu1`` is not in-place, so a forward hook on ``bn1`` sees the
    pre-activation feature that RepDistiller's ``preact=True`` reads.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of ``conv1`` and of the shortcut conv.
        drop_rate (float): Dropout between the two convs. Defaults to 0.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 drop_rate: float = 0.) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.drop_rate = drop_rate
        self.equal_in_out = in_channels == out_channels
        if self.equal_in_out and stride != 1:
            raise ConfigError('WideBasicBlock with equal in/out channels must '
                              'have stride 1 (identity shortcut)')
        self.shortcut: Optional[nn.Conv2d] = None
        if not self.equal_in_out:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        identity = x if self.shortcut is None else self.shortcut(act)
        return identity + out


@MODELS.register_module()
class CifarWRN(FreezableBackbone):
    """Wide ResNet WRN-depth-widen_factor for 32x32 inputs.

    A 3x3 stem conv to 16 channels, three stages of ``(depth - 4) / 6``
    pre-activation blocks with ``16k, 32k, 64k`` channels at strides 1, 2, 2,
    then a final BN + ReLU. WRN-16-1, 16-2, 40-1, 40-2 are the CRD models.

    Outputs (``out_indices``): 0-2 are the raw (not activated) stage outputs,
    3 is ``relu(bn1(stage3))``, the map the original classifier pools.

    Args:
        depth (int): 6n + 4, e.g. 16, 28, 40. Defaults to 40.
        widen_factor (int): Width multiplier k. Defaults to 2.
        in_channels (int): Input image channels. Defaults to 3.
        drop_rate (float): Dropout inside the blocks. Defaults to 0.
        out_indices (Sequence[int]): Outputs to return, 0-3.
            Defaults to (3, ).
        relu_post_features (bool): What the post-activation ReviewKD features
            are. False (default) reads the raw stage outputs, exactly what
            RepDistiller's WRN returns with ``preact=False`` and hence what the
            authors' WRN students were distilled from. True reads
            ``relu(stage output)`` instead.
        frozen_stages (int): Freeze the stem (0) and stages 1..k (k); 3 also
            freezes the final ``bn1``. -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. The
            default reproduces the original: conv weights
            ``N(0, 2 / (k * k * out_channels))``, BN weight 1 / bias 0.
    """
    num_stages = 3

    def __init__(self,
                 depth: int = 40,
                 widen_factor: int = 2,
                 in_channels: int = 3,
                 drop_rate: float = 0.,
                 out_indices: Sequence[int] = (3, ),
                 relu_post_features: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = (
                     CIFAR_INIT_CFG)
                 ) -> None:
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(
                f'CifarWRN depth must be 6n+4 with n >= 1, got {depth}')
        super().__init__(out_indices, self.num_stages + 1, frozen_stages,
                         norm_eval, init_cfg)
        self.depth = depth
        self.widen_factor = widen_factor
        self.num_blocks = (depth - 4) // 6
        self.relu_post_features = relu_post_features
        self.stage_channels = tuple(16 * widen_factor * 2**i
                                    for i in range(self.num_stages))

        self.conv1 = conv3x3(in_channels, 16)
        block = partial(WideBasicBlock, drop_rate=drop_rate)
        channels = 16
        for i, out_channels in enumerate(self.stage_channels):
            self.add_module(
                f'block{i + 1}',
                make_stage(block, channels, out_channels, self.num_blocks,
                           1 if i == 0 else 2))
            channels = out_channels
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=False)
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self._forward_stages(
            self.conv1(x), self._numbered_children('block', self.num_stages),
            lambda out: self.relu(self.bn1(out)))

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """Pre-activation: the next pre-activation BN applied to each stage
        output (``block2.0.bn1``, ``block3.0.bn1``, ``bn1``). Post-activation:
        the stage outputs, raw unless ``relu_post_features``."""
        if preact:
            return [(f'block{i + 2}.0.bn1', False)
                    for i in range(self.num_stages - 1)] + [('bn1', False)]
        return [(f'block{i + 1}', self.relu_post_features)
                for i in range(self.num_stages)]

    def _freeze_stages(self) -> None:
        # bn1 (the final norm) is frozen with the last stage.
        self._freeze([self.conv1],
                     self._numbered_children('block', self.num_stages),
                     head=[self.bn1],
                     head_at=self.num_stages)
