# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Vanilla knowledge distillation on logits (Hinton et al., 2015)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number


@MODELS.register_module()
class KDLoss(nn.Module):
    """Knowledge distillation loss of Hinton et al. ("Distilling the
    Knowledge in a Neural Network").

    .. math::
        L = \\tau^2 \\cdot \\frac{1}{N} \\sum_n \\sum_k p^t_{nk}
            (\\log p^t_{nk} - \\log p^s_{nk}),\\quad
        p = \\mathrm{softmax}(z / \\tau)

    i.e. KL(teacher || student) of the softened distributions, summed over
    classes, averaged over the batch and scaled by :math:`\\tau^2` (the
    ``DistillKL`` of RepDistiller / ``kd_loss`` of mdistiller). The teacher
    logits are a fixed target (detached). Computed in fp32, also under
    autocast.

    Args:
        tau (float): Temperature. Defaults to 4.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, tau: float = 4.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau = check_number('KDLoss', 'tau', tau, positive=True)
        self.loss_weight = check_number('KDLoss', 'loss_weight', loss_weight)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor): Student logits (N, K).
            teacher (Tensor): Teacher logits (N, K).

        Returns:
            Tensor: The scalar loss.
        """
        if student.dim() != 2 or student.shape != teacher.shape:
            raise ConfigError(
                f'KDLoss: expects student and teacher logits of the same '
                f'shape (N, K), got {tuple(student.shape)} and '
                f'{tuple(teacher.shape)}; use inputs=("logits", "logits").')
        with torch.autocast(device_type=student.device.type, enabled=False):
            log_p_s = F.log_softmax(student.float() / self.tau, dim=1)
            log_p_t = F.log_softmax(teacher.detach().float() / self.tau, dim=1)
            kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
            return kl * (self.tau**2 * self.loss_weight)
