# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ImageNet MobileNetV1: the "MobileNet" student of ReviewKD's R50->MobileNet.

Same layers as the authors' ``ImageNet/models/mobilenet.py``: ``layers.i`` here
is their ``model.i`` (the converter renames it), their ``fc`` becomes
``head.fc``, and their final ``AvgPool2d(7)`` is the classifier's
``GlobalAveragePooling`` neck.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from torch import Tensor

from mmreviewkd.registry import MODELS

from .cifar_resnet import FreezableBackbone, conv3x3, depthwise_conv3x3


def _conv_bn_relu(in_channels: int, out_channels: int,
                  stride: int) -> nn.Sequential:
    """The 3x3 stem: conv + BN + ReLU."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _depthwise_separable(in_channels: int, out_channels: int,
                         stride: int) -> nn.Sequential:
    """3x3 depthwise conv + BN + ReLU, then 1x1 conv + BN + ReLU.

    The last ReLU (index 5) is not in place, so the BN output (index 4), the
    pre-activation feature ReviewKD reads, is never overwritten.
    """
    return nn.Sequential(
        depthwise_conv3x3(in_channels, stride),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=False),
    )


@MODELS.register_module()
class MobileNetV1(FreezableBackbone):
    """MobileNetV1 (width 1.0) for 224x224 ImageNet inputs.

    ``layers.0`` is the stride-2 stem; ``layers.1``..``layers.13`` are
    depthwise-separable blocks. Four stages end at ``layers.3``, ``layers.5``,
    ``layers.11`` and ``layers.13`` with 128, 256, 512, 1024 channels at
    strides 4, 8, 16, 32 (56, 28, 14, 7 pixels at 224x224).

    Outputs (``out_indices``): the post-ReLU outputs of those four stages;
    3 is the map the original classifier pools.

    Args:
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output, 0-3. Defaults to (3, ).
        frozen_stages (int): Freeze the stem ``layers.0`` (0) and stages 1..k
            (k). -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None (PyTorch's default initialisation, as in the
            original).
    """
    # (out_channels, stride) of layers.1 .. layers.13
    arch_settings = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                     (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                     (512, 1), (1024, 2), (1024, 1)]
    stage_ends = (3, 5, 11, 13)
    stage_channels = (128, 256, 512, 1024)
    num_stages = len(stage_ends)

    def __init__(self,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(out_indices, self.num_stages, frozen_stages,
                         norm_eval, init_cfg)
        layers = [_conv_bn_relu(in_channels, 32, 2)]
        channels = 32
        for out_channels, stride in self.arch_settings:
            layers.append(_depthwise_separable(channels, out_channels, stride))
            channels = out_channels
        self.layers = nn.Sequential(*layers)
        self._freeze_stages()

    def _stages(self) -> List[nn.Sequential]:
        """The four stages: ``layers`` after the stem (``layers.0``), each
        running from after the previous stage end to its own."""
        ends = self.stage_ends
        return [
            self.layers[prev + 1:end + 1]
            for prev, end in zip((0, ) + ends, ends)
        ]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self._forward_stages(self.layers[0](x), self._stages())

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """The BN output of the last block of each resolution
        (``layers.{3,5,11,13}.4``); the authors' student reads it pre-ReLU."""
        return [(f'layers.{i}.4', not preact) for i in self.stage_ends]

    def _freeze_stages(self) -> None:
        self._freeze(self.layers[:1], self._stages())
