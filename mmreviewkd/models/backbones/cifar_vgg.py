# Copyright (c) mmreviewkd contributors. All rights reserved.
"""VGG with BatchNorm for CIFAR of the CRD / RepDistiller model zoo.

Five conv blocks ``block0``..``block4`` (each an ``nn.Sequential`` of
conv-BN-ReLU units whose last ReLU is left out), max-pools between them and no
FC layers but the classifier. Names match RepDistiller's ``models/vgg.py``
(``vgg*_bn``); its ``classifier`` becomes ``head.fc``.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .cifar_resnet import CIFAR_INIT_CFG, FreezableBackbone


@MODELS.register_module()
class CifarVGG(FreezableBackbone):
    """VGG-8/11/13/16/19 for 32x32 inputs (RepDistiller ``vgg*_bn``).

    ``x -> relu(block0) -> pool -> block1 -> relu -> pool -> block2 -> relu
    -> pool -> block3 -> relu -> [pool3] -> block4 -> relu``. The channels of
    block0..block4 are 64, 128, 256, 512, 512; a 32x32 input gives 32, 16, 8,
    4, 4 pixel maps. ``pool3`` only runs for inputs of height
    ``pool3_input_height`` (the original's special case for 64x64 inputs).

    Outputs (``out_indices``): index i is the post-ReLU output of block i;
    4 is the map the original classifier average-pools.

    Args:
        depth (int): 8, 11, 13, 16 or 19. Defaults to 13.
        in_channels (int): Input image channels. Defaults to 3.
        with_bn (bool): Add a BatchNorm after every conv (the CRD models do).
            Defaults to True.
        out_indices (Sequence[int]): Outputs to return, 0-4.
            Defaults to (4, ).
        pool3_input_height (int, optional): Max-pool before block4 only when
            the input height equals this; None never pools there.
            Defaults to 64, as in the original.
        frozen_stages (int): Freeze blocks 0..k (k >= 0). -1 freezes nothing.
            Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode during training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. The
            default reproduces the original: conv weights
            ``N(0, 2 / (k * k * out_channels))`` and zero bias, BN weight 1 /
            bias 0.
    """
    arch_settings = {
        8: [[64], [128], [256], [512], [512]],
        11: [[64], [128], [256, 256], [512, 512], [512, 512]],
        13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
        16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512],
             [512, 512, 512]],
        19: [[64, 64], [128, 128], [256, 256, 256, 256],
             [512, 512, 512, 512], [512, 512, 512, 512]],
    }
    num_blocks = 5

    def __init__(self,
                 depth: int = 13,
                 in_channels: int = 3,
                 with_bn: bool = True,
                 out_indices: Sequence[int] = (4, ),
                 pool3_input_height: Optional[int] = 64,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = (
                     CIFAR_INIT_CFG)
                 ) -> None:
        if depth not in self.arch_settings:
            raise ConfigError(f'CifarVGG depth must be one of '
                              f'{sorted(self.arch_settings)}, got {depth}')
        super().__init__(out_indices, self.num_blocks, frozen_stages,
                         norm_eval, init_cfg)
        self.depth = depth
        self.pool3_input_height = pool3_input_height
        cfg = self.arch_settings[depth]
        self.stage_channels = tuple(c[-1] for c in cfg)

        channels = in_channels
        for i, block_cfg in enumerate(cfg):
            layers: List[nn.Module] = []
            for out_channels in block_cfg:
                layers.append(
                    nn.Conv2d(channels, out_channels, 3, padding=1))
                if with_bn:
                    layers.append(nn.BatchNorm2d(out_channels))
                layers.append(nn.ReLU(inplace=True))
                channels = out_channels
            # The last ReLU is applied (not in place) in forward, so that the
            # block output stays the pre-activation feature.
            self.add_module(f'block{i}', nn.Sequential(*layers[:-1]))
        self._freeze_stages()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        height = x.shape[2]
        outs = []
        for i in range(self.num_blocks):
            # The original max-pools before blocks 1-3, and before block 4
            # ("pool3") only for 64-pixel-high inputs.
            if 0 < i < 4 or (i == 4 and height == self.pool3_input_height):
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(getattr(self, f'block{i}')(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """block1..block4 (128, 256, 512, 512 channels): the BN output ending
        the block (pre-activation), or its ReLU (post-activation)."""
        return [(f'block{i}', not preact) for i in range(1, self.num_blocks)]

    def _freeze_stages(self) -> None:
        # frozen_stages=k freezes block0..blockk: block0 acts as the stem.
        blocks = self._numbered_children('block', self.num_blocks, start=0)
        self._freeze(blocks[:1], blocks[1:])
