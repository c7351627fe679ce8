# Copyright (c) mmreviewkd contributors. All rights reserved.
"""FitNet hint loss (Romero et al., ICLR 2015)."""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number

Feats = Union[torch.Tensor, Sequence[torch.Tensor]]


@MODELS.register_module()
class FitNetLoss(nn.Module):
    """Hint loss of FitNets: the plain mean squared error between the
    regressed student feature and the teacher's hint feature (``HintLoss``
    of RepDistiller, ``nn.MSELoss()``: mean over all elements).

    The student feature must already have the teacher's shape (use
    :class:`~mmreviewkd.models.connectors.fitnet_regressor.FitNetRegressor`
    as the term's connector). A list of levels gives the sum of the
    per-level MSEs. The teacher is a fixed target (detached). Computed in
    fp32, also under autocast.

    Args:
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = check_number('FitNetLoss', 'loss_weight',
                                        loss_weight)

    def forward(self, student: Feats, teacher: Feats) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor | Sequence[Tensor]): Regressed student
                feature(s), e.g. (N, C, H, W).
            teacher (Tensor | Sequence[Tensor]): Teacher feature(s) of the
                same shape(s).

        Returns:
            Tensor: The scalar loss.
        """
        if isinstance(student, torch.Tensor):
            student, teacher = [student], [teacher]
        if isinstance(teacher, torch.Tensor) or len(student) != len(teacher):
            raise ConfigError('FitNetLoss: student and teacher must both be '
                              'one tensor or lists of the same length.')
        loss = 0.
        with torch.autocast(device_type=student[0].device.type,
                            enabled=False):
            for s, t in zip(student, teacher):
                if s.shape != t.shape:
                    raise ConfigError(
                        f'FitNetLoss: student {tuple(s.shape)} and teacher '
                        f'{tuple(t.shape)} differ in shape; give the term a '
                        f'FitNetRegressor connector (with in_size/out_size '
                        f'if the spatial sizes differ).')
                loss = loss + F.mse_loss(s.float(), t.detach().float())
        return loss * self.loss_weight
