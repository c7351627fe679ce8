# Copyright (c) mmreviewkd contributors. All rights reserved.
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS


def _bins_nest(x: torch.Tensor, size: int) -> bool:
    """Whether adaptive pooling of ``x`` to ``size`` has equal bins."""
    return x.shape[-2] % size == 0 and x.shape[-1] % size == 0


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
    times ``loss_weight``. It is always accumulated in fp32, also under
    autocast.

    Args:
        pool_sizes (Sequence[int]): Output sizes of the pyramid poolings, in
            the order they are tried. Defaults to (4, 2, 1) as in the paper.
        loss_weight (float): Multiplier of the summed loss. Defaults to 1.0.
    """

    def __init__(self,
                 pool_sizes: Sequence[int] = (4, 2, 1),
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'HCLLoss: loss_weight must be >= 0, got '
                             f'{loss_weight}; use 0 to switch it off.')
        if not all(int(p) > 0 for p in pool_sizes):
            raise ValueError(f'HCLLoss: pool_sizes must be positive, got '
                             f'{tuple(pool_sizes)}.')
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        self.loss_weight = loss_weight

    def level_loss(self, student: torch.Tensor,
                   teacher: torch.Tensor) -> torch.Tensor:
        """HCL of one level, in fp32."""
        if student.shape != teacher.shape:
            raise ValueError(
                f'HCLLoss: student output {tuple(student.shape)} and teacher '
                f'feature {tuple(teacher.shape)} differ in shape; the '
                f'connector must map the student to the teacher\'s shape.')
        # Pooling is linear: MSE(P(S), P(T)) = mean(P(S - T)^2). Pool the
        # difference once per size instead of both maps, and pool a coarser
        # size from the previous pooled map where the bins nest exactly.
        diff = student.float() - teacher.float()
        height = diff.shape[2]
        loss = diff.square().mean()
        total_weight = 1.0
        weight = 1.0
        finest = diff  # an exact equal-bin average of diff
        for size in self.pool_sizes:
            if size >= height:
                continue
            weight /= 2.0
            source = finest if _bins_nest(finest, size) else diff
            pooled = F.adaptive_avg_pool2d(source, size)
            if _bins_nest(diff, size):
                finest = pooled
            loss = loss + weight * pooled.square().mean()
            total_weight += weight
        return loss / total_weight

    def forward(self, student_feats: Sequence[torch.Tensor],
                teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum of the per-level losses times ``loss_weight``.

        Args:
            student_feats (Sequence[Tensor]): Connector outputs, each
                (N, C, H, W).
            teacher_feats (Sequence[Tensor]): Teacher features, same shapes.

        Returns:
            Tensor: Scalar fp32 loss.
        """
        if len(student_feats) != len(teacher_feats):
            raise ValueError(
                f'HCLLoss: got {len(student_feats)} student levels but '
                f'{len(teacher_feats)} teacher levels; they must pair up.')
        with torch.autocast(
                device_type=student_feats[0].device.type, enabled=False):
            loss = sum(
                self.level_loss(s, t)
                for s, t in zip(student_feats, teacher_feats))
        return loss * self.loss_weight
