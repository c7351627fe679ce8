# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Relational knowledge distillation (Park et al., CVPR 2019)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number


@MODELS.register_module()
class RKDLoss(nn.Module):
    """Relational knowledge distillation loss, distance + angle (``RKDLoss``
    of RepDistiller with its defaults).

    Features are flattened to (N, D). Distance term: the pairwise Euclidean
    distances (squared distances clamped at 1e-12 before the square root,
    zero diagonal), each divided by the mean of its non-zero entries,
    compared by smooth-L1 (mean over the N*N entries). Angle term: the
    cosines :math:`\\langle e_{ij}, e_{kj}\\rangle` with
    :math:`e_{ij} = \\mathrm{normalize}(x_i - x_j)` for all triples,
    compared by smooth-L1 (mean over N^3). The loss is
    ``distance_weight * distance + angle_weight * angle`` times
    ``loss_weight``. A batch of fewer than two samples has no relations and
    gives 0. The teacher is a fixed target (detached). Computed in fp32,
    also under autocast.

    Args:
        distance_weight (float): Weight of the distance term. Defaults to 25.
        angle_weight (float): Weight of the angle term. Defaults to 50.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 distance_weight: float = 25.0,
                 angle_weight: float = 50.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.distance_weight = check_number('RKDLoss', 'distance_weight',
                                            distance_weight)
        self.angle_weight = check_number('RKDLoss', 'angle_weight',
                                         angle_weight)
        self.loss_weight = check_number('RKDLoss', 'loss_weight', loss_weight)

    @staticmethod
    def distances(x: torch.Tensor) -> torch.Tensor:
        """Pairwise distances (N, N) over their mean non-zero entry."""
        sq = x.square().sum(dim=1)
        d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp(min=1e-12)
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        d = d2.sqrt().masked_fill(eye, 0.0)
        return d / d[d > 0].mean()

    @staticmethod
    def angles(x: torch.Tensor) -> torch.Tensor:
        """Cosines (N, N, N) between the differences ``x_i - x_j`` and
        ``x_k - x_j`` (all unit vectors from sample ``j``)."""
        diff = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)
        return diff @ diff.transpose(1, 2)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor): Student embedding (N, D_s) or maps (flattened).
            teacher (Tensor): Teacher embedding (N, D_t) or maps.

        Returns:
            Tensor: The scalar loss.
        """
        if not isinstance(student, torch.Tensor) or not isinstance(
                teacher, torch.Tensor) or student.dim() < 2 \
                or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ConfigError(
                'RKDLoss: expects one student and one teacher tensor (N, ...)'
                ' with the same N; use inputs=("pooled", "pooled").')
        if student.shape[0] < 2:
            return student.sum() * 0.0
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.float().flatten(1)
            t = teacher.detach().float().flatten(1)
            loss_d = F.smooth_l1_loss(self.distances(s), self.distances(t))
            loss_a = F.smooth_l1_loss(self.angles(s), self.angles(t))
            loss = self.distance_weight * loss_d + self.angle_weight * loss_a
            return loss * self.loss_weight
