# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The student-side connector of OFD (Heo et al., ICCV 2019)."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

Channels = Union[int, Sequence[int]]
Feats = Union[torch.Tensor, Sequence[torch.Tensor]]


@MODELS.register_module()
class OFDConnector(BaseModule):
    """Per level a 1x1 conv (no bias) + BN mapping student channels to the
    teacher's, as mdistiller's OFD ``ConnectorConvBN`` (kernel size 1).

    The convs are initialised kaiming-normal (fan_out, ReLU gain), i.e.
    :math:`\\mathcal{N}(0, 2 / C_{out})`, the BNs with weight 1 and bias 0,
    as the reference. The spatial size is kept: if the teacher's map has a
    different size, :class:`OFDLoss` pools the teacher map to the student's
    size.

    Args:
        in_channels (int | Sequence[int]): Student channels, an int for a
            single map or one per level for a list of maps.
        out_channels (int | Sequence[int]): Teacher channels, same structure.
        norm_cfg (dict): Normalisation layer (mmcv ``build_norm_layer``),
            e.g. ``dict(type='SyncBN')``. Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Overrides the default initialisation.
    """

    def __init__(self,
                 in_channels: Channels,
                 out_channels: Channels,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        ins = [in_channels] if isinstance(in_channels,
                                          int) else list(in_channels)
        outs = [out_channels] if isinstance(out_channels,
                                            int) else list(out_channels)
        if len(ins) != len(outs) or not ins or any(
                isinstance(c, bool) or not isinstance(c, int) or c <= 0
                for c in ins + outs):
            raise ConfigError(
                f'OFDConnector: in_channels {in_channels!r} and out_channels '
                f'{out_channels!r} must be positive ints or equally long '
                f'lists of them.')
        self.in_channels: List[int] = ins
        self.out_channels: List[int] = outs
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 1, bias=False)
            for c_in, c_out in zip(ins, outs))
        self.norms = nn.ModuleList(
            build_norm_layer(norm_cfg, c_out)[1] for c_out in outs)
        for conv in self.convs:
            nn.init.kaiming_normal_(
                conv.weight, mode='fan_out', nonlinearity='relu')
        for norm in self.norms:
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)

    def forward(self, feats: Feats) -> Feats:
        """Map the student map(s) to the teacher's channels.

        Args:
            feats (Tensor | Sequence[Tensor]): (N, C_s, H, W) map, or one per
                level.

        Returns:
            Tensor | list[Tensor]: Same structure, teacher channels.
        """
        single = torch.is_tensor(feats)
        feats = [feats] if single else list(feats)
        if len(feats) != len(self.convs):
            raise ConfigError(
                f'OFDConnector: got {len(feats)} student maps for '
                f'{len(self.convs)} levels (in_channels={self.in_channels}).')
        outs = [
            norm(conv(x))
            for conv, norm, x in zip(self.convs, self.norms, feats)
        ]
        return outs[0] if single else outs
