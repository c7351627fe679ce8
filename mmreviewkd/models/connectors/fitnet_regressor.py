# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The hint regressor of FitNets (Romero et al., ICLR 2015)."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

Size = Union[int, Sequence[int]]


def _as_size(name: str, size: Optional[Size]) -> Optional[Tuple[int, int]]:
    """``size`` as (H, W); an int means a square map."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, int) and s > 0 for s in size)):
        raise ConfigError(f'FitNetRegressor: {name} must be a positive int '
                          f'or (H, W), got {size!r}.')
    return tuple(size)


@MODELS.register_module()
class FitNetRegressor(BaseModule):
    """Convolutional hint regressor of FitNets (``ConvReg`` of
    RepDistiller): maps the student map (N, in_channels, *in_size) to the
    teacher's (N, out_channels, *out_size), then BN (+ ReLU).

    The layer is chosen from the student size ``(h, w)`` and the teacher
    size ``(H, W)`` as the reference does, checked on both axes:

    - ``(h, w) == (2H, 2W)``: 3x3 conv, stride 2, padding 1;
    - ``(2h, 2w) == (H, W)``: 4x4 transposed conv, stride 2, padding 1;
    - ``h >= H and w >= W``: conv with kernel ``(1 + h - H, 1 + w - W)``
      (1x1 for equal sizes);
    - otherwise (the reference raises): bilinear resize of the student map
      to (H, W), then a 1x1 conv.

    Without ``in_size``/``out_size`` the sizes are taken as equal (1x1
    conv). Layers keep PyTorch's default initialisation, as the reference.

    Args:
        in_channels (int): Student channels.
        out_channels (int): Teacher channels.
        in_size (int | Sequence[int], optional): Student (H, W) (an int for
            a square map). Give it together with ``out_size``.
        out_size (int | Sequence[int], optional): Teacher (H, W).
        use_relu (bool): Apply ReLU after BN, as FitNet's hint regressor
            in RepDistiller. Defaults to True.
        norm_cfg (dict): Config of the norm layer (mmcv's
            ``build_norm_layer``). Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Overrides the default initialisation.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 in_size: Optional[Size] = None,
                 out_size: Optional[Size] = None,
                 use_relu: bool = True,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels),
                            ('out_channels', out_channels)):
            if isinstance(value, bool) or not isinstance(value,
                                                         int) or value < 1:
                raise ConfigError(
                    f'FitNetRegressor: {name} must be a positive int, got '
                    f'{value!r}; it regresses one level (use a single-map '
                    f'input such as "feats.<i>").')
        in_size = _as_size('in_size', in_size)
        out_size = _as_size('out_size', out_size)
        if (in_size is None) != (out_size is None):
            raise ConfigError('FitNetRegressor: give both in_size and '
                              'out_size, or neither (equal sizes).')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = in_size
        self.out_size = out_size
        self.use_relu = use_relu
        #: (H, W) the input is resized to first, or None
        self.resize_to: Optional[Tuple[int, int]] = None
        (h, w), (th, tw) = in_size or (1, 1), out_size or (1, 1)
        if (h, w) == (2 * th, 2 * tw):
            self.conv = nn.Conv2d(
                in_channels, out_channels, 3, stride=2, padding=1)
        elif (2 * h, 2 * w) == (th, tw):
            self.conv = nn.ConvTranspose2d(
                in_channels, out_channels, 4, stride=2, padding=1)
        elif h >= th and w >= tw:
            self.conv = nn.Conv2d(in_channels, out_channels,
                                  (1 + h - th, 1 + w - tw))
        else:
            self.resize_to = (th, tw)
            self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Regress the student map.

        Args:
            x (Tensor): Student feature (N, in_channels, *in_size).

        Returns:
            Tensor: (N, out_channels, *out_size).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f'FitNetRegressor: expects a map (N, {self.in_channels}, H, '
                f'W), got {tuple(x.shape)}; check in_channels and the '
                f'term\'s student input.')
        if self.resize_to is not None:
            x = F.interpolate(
                x, size=self.resize_to, mode='bilinear', align_corners=False)
        x = self.norm(self.conv(x))
        return F.relu(x) if self.use_relu else x
