# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ResNets for CIFAR of the CRD / RepDistiller model zoo.

resnet8/14/20/32/44/56/110 use 16-16-32-64 channels (stem, stages 1-3);
resnet8x4 and resnet32x4 use 32-64-128-256. Parameter and buffer names match
RepDistiller's ``models/resnet.py`` so its checkpoints load after adding the
``backbone.`` prefix (see ``tools/model_converters/``).
"""
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

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
            raise ConfigError(f'{owner}: out_indices entry {index} is out of '
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


def conv3x3(in_channels: int,
            out_channels: int,
            stride: int = 1,
            groups: int = 1) -> nn.Conv2d:
    """A bias-free 3x3 conv with padding 1."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=1,
        groups=groups,
        bias=False)


def depthwise_conv3x3(channels: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free 3x3 depthwise conv (padding 1) of ``channels`` channels."""
    return conv3x3(channels, channels, stride, groups=channels)


def make_stage(block: Callable[[int, int, int], nn.Module],
               in_channels: int, out_channels: int, num_blocks: int,
               stride: int) -> nn.Sequential:
    """``num_blocks`` blocks ``block(in_channels, out_channels, stride)``;
    only the first one changes the channels and has the stride."""
    return nn.Sequential(*[
        block(in_channels if j == 0 else out_channels, out_channels,
              stride if j == 0 else 1) for j in range(num_blocks)
    ])


class FreezableBackbone(BaseBackbone):
    """Base of this package's backbones.

    It checks ``out_indices`` and keeps ``frozen_stages`` and ``norm_eval``;
    ``train()`` re-applies ``frozen_stages`` (through the subclass's
    ``_freeze_stages``) and, with ``norm_eval``, puts every BatchNorm layer
    back in eval mode. Subclasses implement ``forward``, ``_freeze_stages``
    (usually with :meth:`_forward_stages` and :meth:`_freeze`) and
    :meth:`review_feature_points`.

    Args:
        out_indices (int | Sequence[int]): Outputs to return; negative
            indices count from the end.
        num_outputs (int): How many outputs ``out_indices`` picks from.
        frozen_stages (int): Stages to freeze (eval mode and no gradient);
            -1 freezes nothing.
        norm_eval (bool): Keep BN layers in eval mode during training.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to None.
    """

    def __init__(self,
                 out_indices: Union[int, Sequence[int]],
                 num_outputs: int,
                 frozen_stages: int,
                 norm_eval: bool,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_indices = normalize_out_indices(out_indices, num_outputs,
                                                 type(self).__name__)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """Where ReviewKD's stage features are read, shallow to deep, pooled
        level excluded.

        Each item is ``(name, relu)``: ``name`` is a submodule path relative to
        the backbone (as in ``named_modules()``) whose forward OUTPUT is the
        feature; ``relu=True`` means the reader applies a non-inplace
        ``F.relu`` to that output.

        Args:
            preact (bool): Read pre-activation features (RepDistiller's
                ``preact=True``) instead of post-activation ones.

        Returns:
            list[tuple[str, bool]]: The ``(name, relu)`` points.
        """
        raise NotImplementedError

    def _numbered_children(self,
                           prefix: str,
                           num: int,
                           start: int = 1) -> List[nn.Module]:
        """The ``num`` submodules ``{prefix}{start}``, ``{prefix}{start+1}``...
        """
        return [
            getattr(self, f'{prefix}{i}') for i in range(start, start + num)
        ]

    def _forward_stages(
            self,
            x: Tensor,
            stages: Sequence[nn.Module],
            head: Optional[Callable[[Tensor], Tensor]] = None
    ) -> Tuple[Tensor, ...]:
        """Run ``stages`` in turn and return the outputs ``out_indices`` picks.

        Output ``i`` is the output of ``stages[i]``; with ``head``, output
        ``len(stages)`` is ``head`` applied to the last stage's output.
        """
        outs = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        if head is not None and len(stages) in self.out_indices:
            outs.append(head(x))
        return tuple(outs)

    def _freeze(self,
                stem: Sequence[nn.Module],
                stages: Sequence[nn.Module],
                head: Sequence[nn.Module] = (),
                head_at: Optional[int] = None) -> None:
        """Freeze ``stem`` and ``stages[:frozen_stages]``, plus ``head`` once
        ``frozen_stages >= head_at``; nothing if ``frozen_stages < 0``.

        ``head_at`` defaults to ``len(stages) + 1``: the head counts as one
        more stage.
        """
        if self.frozen_stages < 0:
            return
        modules = list(stem) + list(stages[:self.frozen_stages])
        if head_at is None:
            head_at = len(stages) + 1
        if self.frozen_stages >= head_at:
            modules += head
        freeze_modules(modules)

    def _freeze_stages(self) -> None:
        """Freeze what ``frozen_stages`` asks for (see :meth:`_freeze`)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> 'FreezableBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self


class LayerStagesBackbone(FreezableBackbone):
    """Base of the backbones made of a ``conv1`` + ``bn1`` + ReLU stem and
    stages ``layer1``..``layer{num_stages}`` whose last blocks have a
    ``preact`` tap: the CIFAR ResNets and ShuffleNets.

    Output i is the output of stage i + 1. ``frozen_stages=k`` freezes the
    stem and stages 1..k.
    """
    num_stages: int

    def _stem(self, x: Tensor) -> Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def _stages(self) -> List[nn.Module]:
        return self._numbered_children('layer', self.num_stages)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self._forward_stages(self._stem(x), self._stages())

    def review_feature_points(self, preact: bool) -> List[Tuple[str, bool]]:
        """Post-activation: the stage outputs. Pre-activation: the ``preact``
        tap of each stage's last block (RepDistiller ``preact=True``)."""
        names = [f'layer{i + 1}' for i in range(self.num_stages)]
        if preact:
            return [(f'{name}.{len(getattr(self, name)) - 1}.preact', False)
                    for name in names]
        return [(name, False) for name in names]

    def _freeze_stages(self) -> None:
        self._freeze([self.conv1, self.bn1], self._stages())


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
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
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
class CifarResNet(LayerStagesBackbone):
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
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(
                f'CifarResNet depth must be 6n+2 with n >= 1, got {depth}')
        super().__init__(out_indices, self.num_stages, frozen_stages,
                         norm_eval, init_cfg)
        self.depth = depth
        self.num_blocks = (depth - 2) // 6
        self.stage_channels = tuple(base_channels * 2**i
                                    for i in range(self.num_stages))

        self.conv1 = conv3x3(in_channels, stem_channels)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        channels = stem_channels
        for i, out_channels in enumerate(self.stage_channels):
            self.add_module(
                f'layer{i + 1}',
                make_stage(CifarBasicBlock, channels, out_channels,
                           self.num_blocks, 1 if i == 0 else 2))
            channels = out_channels
        self._freeze_stages()

    def _stem(self, x: Tensor) -> Tensor:
        # the original's stem ReLU is a module (``relu``), in place
        return self.relu(self.bn1(self.conv1(x)))
