# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Attention based fusion (ABF) and the residual chain of ReviewKD.

Plain PyTorch ops and autograd: the same code runs on CPU and CUDA, in fp32
and under autocast.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

Size = Tuple[int, int]


def _resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Nearest resize to ``size`` (H, W); returns ``x`` itself if it fits."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='nearest')


@MODELS.register_module()
class ABF(BaseModule):
    """Attention based fusion module of ReviewKD (one per feature level).

    ``conv1`` (1x1, no bias) + BN maps the student feature to
    ``mid_channels``; if ``fuse``, it is fused with the residual coming from
    the next deeper level through two sigmoid attention maps predicted by a
    1x1 ``att_conv`` (with bias) from their concatenation; ``conv2`` (3x3, no
    bias) + BN maps the result to the teacher's ``out_channels``. No ReLU
    anywhere. ``conv1`` and ``conv2`` are initialised kaiming-uniform with
    ``a=1``; ``att_conv`` and the BNs keep PyTorch's defaults.

    With ``fusion='sum'`` (the paper's Table 7 ablation "RLF without ABF")
    the residual is added as is, ``x + up(r)``, and there is no
    ``att_conv``.

    Args:
        in_channels (int): Student channels at this level.
        mid_channels (int): Channels of the fused (residual) feature.
        out_channels (int): Teacher channels at this level.
        fuse (bool): Whether this level fuses a deeper residual. False for
            the deepest level of the chain.
        fusion (str): How a fusing level fuses: ``'attention'`` (ABF, the
            default) or ``'sum'`` (plain sum, an ablation).
        norm_cfg (dict): Config of the normalisation layers (mmcv's
            ``build_norm_layer``). Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Overrides the default initialisation.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 fuse: bool,
                 fusion: str = 'attention',
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if fusion not in ('attention', 'sum'):
            raise ConfigError(f'ABF: fusion must be "attention" or "sum", '
                              f'got {fusion!r}.')
        self.in_channels = in_channels
        self.mid_channels = mid_channels
        self.out_channels = out_channels
        self.fuse = fuse
        self.fusion = fusion
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.norm1 = build_norm_layer(norm_cfg, mid_channels)[1]
        self.conv2 = nn.Conv2d(
            mid_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.att_conv = nn.Conv2d(mid_channels * 2, 2, 1) \
            if fuse and fusion == 'attention' else None
        #: the last (N, 2, H, W) attention maps while ``record_attention``
        self.record_attention = False
        self.attention: Optional[torch.Tensor] = None
        nn.init.kaiming_uniform_(self.conv1.weight, a=1)
        nn.init.kaiming_uniform_(self.conv2.weight, a=1)

    def _fuse(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``x * a0 + up(r) * a1`` with ``a = sigmoid(att_conv([x, up(r)]))``
        and ``up`` the nearest resize of ``r`` to the size of ``x``.

        Computed without the concatenation: a 1x1 conv commutes with nearest
        resizing (both act per pixel), so the residual's half of
        ``att_conv`` runs at the residual's (lower) resolution and only its
        2-channel result is resized. Same values as the authors' form.
        """
        if self.att_conv is None:  # fusion='sum'
            return x + _resize(residual, x.shape[-2:])
        mid = self.mid_channels
        weight = self.att_conv.weight
        size = x.shape[-2:]
        logits = F.conv2d(x, weight[:, :mid], self.att_conv.bias) + _resize(
            F.conv2d(residual, weight[:, mid:]), size)
        att = torch.sigmoid(logits)
        if self.record_attention:
            self.attention = att.detach()
        return x * att[:, 0:1] + _resize(residual, size) * att[:, 1:2]

    def forward(
        self,
        x: torch.Tensor,
        residual: Optional[torch.Tensor] = None,
        out_size: Optional[Size] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Transform (and fuse) one level.

        Args:
            x (Tensor): Student feature (N, in_channels, H, W).
            residual (Tensor, optional): Fused feature of the next deeper
                level, (N, mid_channels, h, w); nearest-resized to (H, W).
                Required iff ``fuse``.
            out_size (tuple[int, int], optional): Teacher's (H, W) at this
                level. If it differs from (H, W) the fused feature is
                nearest-resized to it before ``conv2`` (heterogeneous pairs).

        Returns:
            tuple[Tensor, Tensor]: ``(out, fused)``: ``out`` (N, out_channels,
            *out_size) is compared with the teacher; ``fused`` is the
            residual handed to the next shallower level.
        """
        x = self.norm1(self.conv1(x))
        if self.fuse:
            if residual is None:
                raise ConfigError('ABF: this level fuses a deeper residual '
                                  'but none was given.')
            x = self._fuse(x, residual)
        if out_size is not None:
            x = _resize(x, out_size)
        return self.norm2(self.conv2(x)), x


@MODELS.register_module()
class ABFConnector(BaseModule):
    """The ABF chain with the residual learning framework of ReviewKD.

    Levels are given shallow to deep and processed deepest first: the deepest
    ABF does not fuse, every shallower ABF fuses the residual of the level
    below it. The output at level ``j`` is thus a function of the student
    features ``j..n`` and is compared with teacher level ``j``.

    Args:
        in_channels (Sequence[int]): Student channels per level, shallow to
            deep.
        out_channels (Sequence[int]): Teacher channels per level, shallow to
            deep.
        mid_channels (int, optional): Channels of the fused features.
            Defaults to ``min(512, in_channels[-1])`` as in the original.
        fusion (str): ``'attention'`` (ABF, default) or ``'sum'``: the
            residual learning framework without ABF (Table 7 ablation).
        norm_cfg (dict): Normalisation layers of the ABFs (``SyncBN`` for
            synchronised BN). Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Sequence[int],
                 mid_channels: Optional[int] = None,
                 fusion: str = 'attention',
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = [int(c) for c in in_channels]
        out_channels = [int(c) for c in out_channels]
        if len(in_channels) != len(out_channels) or not in_channels:
            raise ConfigError(
                f'ABFConnector: in_channels {in_channels} (student levels) '
                f'and out_channels {out_channels} (teacher levels) must be '
                f'non-empty and of equal length.')
        if any(c <= 0 for c in in_channels + out_channels):
            raise ConfigError(f'ABFConnector: channel counts must be '
                              f'positive, got in_channels={in_channels}, '
                              f'out_channels={out_channels}.')
        if mid_channels is None:
            mid_channels = min(512, in_channels[-1])
        if isinstance(mid_channels, bool) or not isinstance(
                mid_channels, int) or mid_channels <= 0:
            raise ConfigError(f'ABFConnector: mid_channels must be a positive '
                              f'integer, got {mid_channels!r}; remove it to '
                              f'use min(512, deepest student channels).')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mid_channels = mid_channels
        num_levels = len(in_channels)
        self.abfs = nn.ModuleList(
            ABF(in_c,
                mid_channels,
                out_c,
                fuse=i < num_levels - 1,
                fusion=fusion,
                norm_cfg=norm_cfg)
            for i, (in_c, out_c) in enumerate(zip(in_channels, out_channels)))

    def record_attention(self, enabled: bool = True) -> None:
        """Keep (or stop keeping) each fusing ABF's last attention maps in
        ``abfs[i].attention``, (N, 2, H, W): channel 0 weighs the level's
        own feature, channel 1 the deeper residual (for pictures)."""
        for abf in self.abfs:
            abf.record_attention = enabled
            abf.attention = None

    def forward(
            self,
            student_feats: Sequence[torch.Tensor],
            out_sizes: Optional[Sequence[Size]] = None) -> List[torch.Tensor]:
        """Map the student levels to the teacher's shapes.

        Args:
            student_feats (Sequence[Tensor]): Student features, shallow to
                deep, ``student_feats[i]`` with ``in_channels[i]`` channels.
            out_sizes (Sequence[tuple[int, int]], optional): Teacher (H, W)
                per level; needed only when they differ from the student's.

        Returns:
            list[Tensor]: Outputs shallow to deep, ``out[i]`` shaped like
            teacher level ``i``.
        """
        if len(student_feats) != len(self.abfs):
            raise ConfigError(
                f'ABFConnector: built for {len(self.abfs)} levels, got '
                f'{len(student_feats)} student features.')
        for i, (feat, c) in enumerate(zip(student_feats, self.in_channels)):
            if feat.dim() != 4 or feat.shape[1] != c:
                raise ConfigError(
                    f'ABFConnector: level {i} expects (N, {c}, H, W) but got '
                    f'{tuple(feat.shape)}; fix in_channels or the features.')
        if out_sizes is None:
            out_sizes = [None] * len(self.abfs)
        outs: List[torch.Tensor] = [None] * len(self.abfs)  # type: ignore
        residual = None
        for i in range(len(self.abfs) - 1, -1, -1):
            outs[i], residual = self.abfs[i](student_feats[i], residual,
                                             out_sizes[i])
        return outs
