# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018)."""
import torch
import torch.nn as nn

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number


@MODELS.register_module()
class PKTLoss(nn.Module):
    """Probabilistic knowledge transfer loss (``PKT`` of RepDistiller).

    Each sample's feature is flattened to a vector and L2-normalised
    (``x / (||x|| + eps)``); the cosine similarities :math:`K_{ij}` of the
    batch are mapped to :math:`(K_{ij} + 1) / 2` and normalised per row into
    conditional probabilities :math:`P_{ij}`. The loss is

    .. math::
        L = \\frac{1}{N^2} \\sum_{i,j} P^t_{ij}
            \\log \\frac{P^t_{ij} + \\epsilon}{P^s_{ij} + \\epsilon}

    times ``loss_weight``, with :math:`\\epsilon = 10^{-7}`. Student and
    teacher dimensions need not match. The teacher is a fixed target
    (detached). Computed in fp32, also under autocast.

    Args:
        eps (float): The epsilon above. Defaults to 1e-7.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, eps: float = 1e-7, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.eps = check_number('PKTLoss', 'eps', eps, positive=True)
        self.loss_weight = check_number('PKTLoss', 'loss_weight',
                                        loss_weight)

    def probabilities(self, feat: torch.Tensor) -> torch.Tensor:
        """The conditional probabilities (N, N) of a batch of features."""
        feat = feat.flatten(1)
        feat = feat / (feat.norm(dim=1, keepdim=True) + self.eps)
        sim = (feat @ feat.t() + 1.0) / 2.0
        return sim / sim.sum(dim=1, keepdim=True)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor): Student embedding (N, C_s) or maps
                (N, C_s, H, W) (flattened).
            teacher (Tensor): Teacher embedding (N, C_t) or maps.

        Returns:
            Tensor: The scalar loss.
        """
        if not isinstance(student, torch.Tensor) or not isinstance(
                teacher, torch.Tensor) or student.dim() < 2 \
                or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ConfigError(
                'PKTLoss: expects one student and one teacher tensor (N, ...)'
                ' with the same N; use inputs=("pooled", "pooled").')
        with torch.autocast(device_type=student.device.type, enabled=False):
            p_s = self.probabilities(student.float())
            p_t = self.probabilities(teacher.detach().float())
            loss = (p_t * torch.log((p_t + self.eps) / (p_s + self.eps)))
            return loss.mean() * self.loss_weight
