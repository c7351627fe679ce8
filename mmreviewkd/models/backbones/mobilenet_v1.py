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
from .cifar_resnet import (FreezableBackbone, freeze_modules,
                           normalize_out_indices)


def _conv_bn_relu(in_channels: int, out_channels: int,
                  stride: int) -> nn.Sequential:
    """The 3x3 stem: conv + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _depthwise_separable(in_channels: int, out_channels: int,
                         stride: int) -> nn.Sequential:
    """3x3 depthwise conv + BN + ReLU, then 1x1 conv + BN + ReLU.

    The last ReLU (index 5) is not in place, so the BN output (index 4), the
    pre-activation feature ReviewKD reads, is never overwritten.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride,
            1,
            groups=in_channels,
            bias=False),
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
        frozen_stages (int): Freeze the stem (0) and stages 1..k (k).
            -1 freezes nothing. Defaults to -1.
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

    def __init__(self,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_stages = len(self.stage_ends)
        self.out_indices = normalize_out_indices(out_indices,
                                                 self.num_stages,
                                                 type(self).__name__)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        layers = [_conv_bn_relu(in_channels, 32, 2)]
        channels = 32
        for out_channels, stride in self.arch_settings:
            layers.append(_depthwise_separable(channels, out_channels, stride))
            channels = out_channels
        self.layers = nn.Sequential(*layers)
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.stage_ends:
                if self.stage_ends.index(i) in self.out_indices:
                    outs.append(x)
        return tuple(outs)

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """Where ReviewKD's stage features are read, shallow to deep, pooled
        level excluded.

        Each item is ``(name, relu)``: ``name`` is a submodule path relative to
        the backbone (as in ``named_modules()``) whose forward OUTPUT is the
        feature; ``relu=True`` means the reader applies a non-inplace
        ``F.relu`` to that output.

        The BN output of the last block of each resolution
        (``layers.{3,5,11,13}.4``, 128/256/512/1024 channels); the authors'
        student reads them pre-ReLU.
        """
        return [(f'layers.{i}.4', not preact) for i in self.stage_ends]

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        if self.frozen_stages == 0:
            last = 0
        else:
            last = self.stage_ends[min(self.frozen_stages,
                                       self.num_stages) - 1]
        freeze_modules(list(self.layers[:last + 1]))
