# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Variational information distillation (VID, Ahn et al., CVPR 2019)."""
import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

from .utils import pool_to_common_size

Channels = Union[int, Sequence[int]]
Feats = Union[torch.Tensor, Sequence[torch.Tensor]]


def _as_list(channels: Channels, name: str) -> List[int]:
    """``channels`` as a non-empty list of positive ints."""
    values = [channels] if isinstance(channels, int) else list(channels)
    if not values or any(
            isinstance(c, bool) or not isinstance(c, int) or c <= 0
            for c in values):
        raise ConfigError(f'VIDLoss: {name} must be a positive int or a '
                          f'non-empty list of them, got {channels!r}.')
    return values


@MODELS.register_module()
class VIDLoss(nn.Module):
    """Variational information distillation, as RepDistiller's ``VIDLoss``.

    Per level a regressor ``conv1x1 - ReLU - conv1x1 - ReLU - conv1x1`` (no
    biases; ``in -> mid -> mid -> out`` channels) predicts the mean
    :math:`\\mu` of a Gaussian over the teacher feature :math:`t`, with a
    learnt per-channel variance :math:`v = \\mathrm{softplus}(s) + \\epsilon`
    (``s`` initialised so that :math:`v` starts at ``init_pred_var``). The
    level loss is the mean over all elements of the negative log-likelihood
    without its constant,

    .. math::
        L = \\mathrm{mean}\\Big(\\tfrac12\\big(\\log v +
            \\frac{(\\mu - t)^2}{v}\\big)\\Big),

    summed over levels and multiplied by ``loss_weight``. If the student's
    and the teacher's maps differ in size, both are adaptive-average-pooled
    to the smaller height and width first (before the regressor), as the
    reference does. The regressors follow autocast; the likelihood is
    computed in fp32.
    The module owns its parameters: use it without a connector.

    Args:
        in_channels (int | Sequence[int]): Student channels, an int for a
            single map or one per level for a list of maps.
        out_channels (int | Sequence[int]): Teacher channels, same structure.
        mid_channels (int | Sequence[int], optional): Hidden channels of the
            regressors. Defaults to ``out_channels`` (the reference's
            setting).
        init_pred_var (float): Initial variance. Defaults to 5.0.
        eps (float): Lower bound added to the variance. Defaults to 1e-5.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 in_channels: Channels,
                 out_channels: Channels,
                 mid_channels: Optional[Channels] = None,
                 init_pred_var: float = 5.0,
                 eps: float = 1e-5,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        ins = _as_list(in_channels, 'in_channels')
        outs = _as_list(out_channels, 'out_channels')
        mids = outs if mid_channels is None else _as_list(
            mid_channels, 'mid_channels')
        if isinstance(mid_channels, int) and len(ins) > 1:
            mids = mids * len(ins)
        if not len(ins) == len(outs) == len(mids):
            raise ConfigError(
                f'VIDLoss: in_channels {ins}, out_channels {outs} and '
                f'mid_channels {mids} must have one entry per level.')
        if not init_pred_var > eps > 0:
            raise ConfigError(f'VIDLoss: need init_pred_var > eps > 0, got '
                              f'init_pred_var={init_pred_var}, eps={eps}.')
        self.eps = float(eps)
        self.loss_weight = float(loss_weight)
        self.regressors = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_mid, 1, bias=False), nn.ReLU(),
                nn.Conv2d(c_mid, c_mid, 1, bias=False), nn.ReLU(),
                nn.Conv2d(c_mid, c_out, 1, bias=False))
            for c_in, c_mid, c_out in zip(ins, mids, outs))
        # inverse softplus: softplus(s) + eps == init_pred_var
        init_scale = math.log(math.expm1(init_pred_var - eps))
        self.log_scales = nn.ParameterList(
            nn.Parameter(torch.full((c, ), init_scale)) for c in outs)

    def variance(self, level: int = 0) -> torch.Tensor:
        """The per-channel predicted variance of ``level``, shape (C, )."""
        return F.softplus(self.log_scales[level].float()) + self.eps

    def level_loss(self, level: int, student: torch.Tensor,
                   teacher: torch.Tensor) -> torch.Tensor:
        """The (unweighted) VID loss of one level."""
        student, teacher = pool_to_common_size(student, teacher.detach())
        mean = self.regressors[level](student).float()
        var = self.variance(level).view(1, -1, 1, 1)
        if mean.shape != teacher.shape:
            raise ConfigError(
                f'VIDLoss: level {level} predicts {tuple(mean.shape)} but the '
                f'teacher feature is {tuple(teacher.shape)}; check '
                f'out_channels.')
        return (0.5 * (var.log() +
                       (mean - teacher.float()).square() / var)).mean()

    def forward(self, student: Feats, teacher: Feats) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor | Sequence[Tensor]): Student map(s) (N, C, H, W).
            teacher (Tensor | Sequence[Tensor]): Teacher map(s), same
                structure.

        Returns:
            Tensor: The scalar loss.
        """
        students = [student] if torch.is_tensor(student) else list(student)
        teachers = [teacher] if torch.is_tensor(teacher) else list(teacher)
        if not len(students) == len(teachers) == len(self.regressors):
            raise ConfigError(
                f'VIDLoss: got {len(students)} student and {len(teachers)} '
                f'teacher maps for {len(self.regressors)} regressors; they '
                f'must pair up.')
        loss = sum(
            self.level_loss(i, s, t)
            for i, (s, t) in enumerate(zip(students, teachers)))
        return loss * self.loss_weight
