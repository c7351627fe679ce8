# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017)."""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number

from .utils import pool_to_common_size

Feats = Union[torch.Tensor, Sequence[torch.Tensor]]


@MODELS.register_module()
class ATLoss(nn.Module):
    """Activation-based attention transfer loss (``Attention`` of
    RepDistiller).

    Per level, the attention map of a feature :math:`f` (N, C, H, W) is

    .. math::
        a(f) = \\mathrm{normalize}(\\mathrm{flatten}(
            \\tfrac{1}{C} \\textstyle\\sum_c f_c^p))

    (L2-normalised per sample over the H*W positions), and the level's loss
    is :math:`\\mathrm{mean}((a(f_s) - a(f_t))^2)` over N*H*W. The loss is
    the sum over levels times ``loss_weight``. Channels need not match.

    If the student and teacher maps of a level differ in size, the larger is
    adaptive-average-pooled to the smaller, axis by axis: both go to
    ``(min(h, H), min(w, W))`` (the reference compares the heights only and
    pools to a square). The teacher is a fixed target (detached). Computed
    in fp32, also under autocast.

    Args:
        p (float): Exponent of the activations. Defaults to 2.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, p: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.p = check_number('ATLoss', 'p', p, positive=True)
        self.loss_weight = check_number('ATLoss', 'loss_weight', loss_weight)

    def attention(self, feat: torch.Tensor) -> torch.Tensor:
        """The attention map (N, H*W) of one feature (N, C, H, W)."""
        return F.normalize(feat.pow(self.p).mean(dim=1).flatten(1), dim=1)

    def forward(self, student: Feats, teacher: Feats) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor | Sequence[Tensor]): Student map(s), each
                (N, C_s, h, w).
            teacher (Tensor | Sequence[Tensor]): Teacher map(s), paired
                level by level, each (N, C_t, H, W).

        Returns:
            Tensor: The scalar loss.
        """
        if isinstance(student, torch.Tensor):
            student, teacher = [student], [teacher]
        if isinstance(teacher, torch.Tensor) or len(student) != len(teacher):
            raise ConfigError('ATLoss: student and teacher must both be one '
                              'map or lists with the same number of levels.')
        loss = 0.
        with torch.autocast(device_type=student[0].device.type,
                            enabled=False):
            for s, t in zip(student, teacher):
                if s.dim() != 4 or t.dim() != 4 or s.shape[0] != t.shape[0]:
                    raise ConfigError(
                        f'ATLoss: expects maps (N, C, H, W) with the same N, '
                        f'got {tuple(s.shape)} and {tuple(t.shape)}.')
                s, t = pool_to_common_size(s.float(), t.detach().float())
                diff = self.attention(s) - self.attention(t)
                loss = loss + diff.square().mean()
        return loss * self.loss_weight
