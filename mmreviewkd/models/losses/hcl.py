# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Hierarchical context loss (HCL) of ReviewKD, in plain PyTorch ops."""
from typing import List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError


@MODELS.register_module()
class HCLLoss(nn.Module):
    """Hierarchical context loss of ReviewKD.

    For every level with student output :math:`S` and teacher feature
    :math:`T` of the same shape (height :math:`H`):

    .. math::
        L = \\frac{\\mathrm{MSE}(S, T) + \\sum_k w_k\\,
            \\mathrm{MSE}(P_l(S), P_l(T))}{1 + \\sum_k w_k}

    where :math:`P_l` is adaptive average pooling to :math:`l \\times l`,
    :math:`l` taken from ``pool_sizes`` in order and skipped when
    :math:`l \\geq H`; the k-th pooled term actually used (k = 1, 2, ...)
    gets :math:`w_k = 0.5^k`. The loss is the plain sum of ``L`` over levels
    times ``loss_weight``. It is always computed in fp32, also under
    autocast. Pooling is linear, so :math:`P_l(S) - P_l(T) = P_l(S - T)`:
    the difference is pooled once per size (same values as the authors'
    form).

    Args:
        pool_sizes (Sequence[int]): Output sizes of the pyramid poolings, in
            the order they are tried. Defaults to (4, 2, 1) as in the paper.
        loss_weight (float): Multiplier of the summed loss. Defaults to 1.0.
    """

    def __init__(self,
                 pool_sizes: Sequence[int] = (4, 2, 1),
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(loss_weight, bool) or not isinstance(
                loss_weight, (int, float)) or loss_weight < 0:
            raise ConfigError(f'HCLLoss: loss_weight must be >= 0, got '
                              f'{loss_weight!r} (a number; 0 switches it '
                              f'off).')
        if not all(int(p) > 0 for p in pool_sizes):
            raise ConfigError(f'HCLLoss: pool_sizes must be positive, got '
                              f'{tuple(pool_sizes)}.')
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        self.loss_weight = float(loss_weight)

    def level_loss(self, student: torch.Tensor,
                   teacher: torch.Tensor) -> torch.Tensor:
        """HCL of one level (unweighted), in fp32."""
        if student.shape != teacher.shape:
            raise ConfigError(
                f'HCLLoss: student output {tuple(student.shape)} and teacher '
                f'feature {tuple(teacher.shape)} differ in shape; the '
                f'connector must map the student to the teacher\'s shape.')
        diff = student.float() - teacher.float()
        loss = diff.square().mean()
        total_weight = 1.0
        weight = 1.0
        for size in self.pool_sizes:
            if size >= student.shape[2]:
                continue
            weight /= 2
            pooled = F.adaptive_avg_pool2d(diff, size)
            loss = loss + weight * pooled.square().mean()
            total_weight += weight
        return loss / total_weight

    def forward(self,
                student_feats: Sequence[torch.Tensor],
                teacher_feats: Sequence[torch.Tensor],
                per_level: bool = False
                ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """The loss times ``loss_weight``, in fp32.

        Args:
            student_feats (Sequence[Tensor]): Connector outputs, each
                (N, C, H, W), shallow to deep.
            teacher_feats (Sequence[Tensor]): Teacher features, same shapes.
            per_level (bool): Return the list of per-level losses (shallow
                to deep; their sum is the loss) instead of the sum. The
                distiller asks for it to log each level.

        Returns:
            Tensor | list[Tensor]: The scalar loss, or one scalar per level.
        """
        if len(student_feats) != len(teacher_feats):
            raise ConfigError(
                f'HCLLoss: got {len(student_feats)} student levels but '
                f'{len(teacher_feats)} teacher levels; they must pair up.')
        with torch.autocast(
                device_type=student_feats[0].device.type, enabled=False):
            levels = [
                self.level_loss(s, t) * self.loss_weight
                for s, t in zip(student_feats, teacher_feats)
            ]
        return levels if per_level else sum(levels)
