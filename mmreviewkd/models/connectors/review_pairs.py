# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The review mechanism without the residual chain (paper, Tables 6 and 7).

Every distilled (student level i, teacher level j) pair has its own adapter;
nothing is fused. ``pairs='review'`` (all j <= i) is Table 7's "RM" row,
one pair ``[(i, j)]`` is a cell of Table 6's review matrix.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .abf import ABF, Size

Pairs = Union[str, Sequence[Sequence[int]]]


@MODELS.register_module()
class ReviewPairsConnector(BaseModule):
    """One plain adapter per (student level, teacher level) pair.

    The adapter of pair ``(i, j)`` is a non-fusing :class:`ABF` (1x1 conv +
    BN, nearest resize to teacher level ``j``'s size, 3x3 conv + BN): the
    same layers as ReviewKD's connector without the fusion, so the ablations
    differ only in what they remove. Output ``k`` is compared with teacher
    level ``teacher_levels[k]``; with ``HCLLoss(pool_sizes=())`` the loss is
    the sum of the pairwise L2 (MSE) terms of the paper's review mechanism.

    Args:
        in_channels (Sequence[int]): Student channels per level, shallow to
            deep.
        out_channels (Sequence[int]): Teacher channels per level.
        pairs (str | Sequence[Sequence[int]]): ``'review'``: every student
            level ``i`` against every teacher level ``j <= i`` (the review
            mechanism); ``'same'``: ``(i, i)`` only (multi-layer
            distillation without review); or explicit 0-based ``(i, j)``
            pairs, negative indices counting from the deepest level, e.g.
            ``[(2, 1)]`` for Table 6's student stage 3 / teacher stage 2.
        mid_channels (int, optional): Channels between the two convs.
            Defaults to ``min(512, in_channels[-1])``.
        norm_cfg (dict): Normalisation layers. Defaults to
            ``dict(type='BN')``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Sequence[int],
                 pairs: Pairs = 'review',
                 mid_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = [int(c) for c in in_channels]
        out_channels = [int(c) for c in out_channels]
        if mid_channels is None:
            mid_channels = min(512, in_channels[-1])
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pairs = self._resolve_pairs(pairs, len(in_channels),
                                         len(out_channels))
        #: per output, the teacher level it is compared with
        self.teacher_levels = [j for _, j in self.pairs]
        self.adapters = nn.ModuleList(
            ABF(in_channels[i], mid_channels, out_channels[j], fuse=False,
                norm_cfg=norm_cfg) for i, j in self.pairs)

    @staticmethod
    def _resolve_pairs(pairs: Pairs, num_student: int,
                       num_teacher: int) -> List[Tuple[int, int]]:
        if pairs == 'review':
            return [(i, j) for i in range(num_student)
                    for j in range(min(i + 1, num_teacher))]
        if pairs == 'same':
            return [(i, i) for i in range(min(num_student, num_teacher))]
        if isinstance(pairs, str) or not pairs or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise ConfigError(
                f'ReviewPairsConnector: pairs must be "review", "same" or a '
                f'list of (student level, teacher level) pairs, got '
                f'{pairs!r}.')
        resolved = []
        for i, j in pairs:
            if not (-num_student <= int(i) < num_student
                    and -num_teacher <= int(j) < num_teacher):
                raise ConfigError(
                    f'ReviewPairsConnector: pair ({i}, {j}) is out of range '
                    f'for {num_student} student and {num_teacher} teacher '
                    f'levels (0-based, shallow to deep).')
            resolved.append((int(i) % num_student, int(j) % num_teacher))
        return resolved

    def forward(
            self,
            student_feats: Sequence[torch.Tensor],
            out_sizes: Optional[Sequence[Size]] = None) -> List[torch.Tensor]:
        """One output per pair, shaped like its teacher level.

        Args:
            student_feats (Sequence[Tensor]): Student features, shallow to
                deep.
            out_sizes (Sequence[tuple[int, int]], optional): Teacher (H, W)
                per teacher level. Without them the outputs keep the
                student's sizes.

        Returns:
            list[Tensor]: ``out[k]`` for pair ``pairs[k]``.
        """
        if len(student_feats) != len(self.in_channels):
            raise ConfigError(
                f'ReviewPairsConnector: built for {len(self.in_channels)} '
                f'levels, got {len(student_feats)} student features.')
        return [
            adapter(student_feats[i], None,
                    None if out_sizes is None else out_sizes[j])[0]
            for adapter, (i, j) in zip(self.adapters, self.pairs)
        ]
