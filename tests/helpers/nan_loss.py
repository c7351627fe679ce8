# Copyright (c) mmreviewkd contributors. All rights reserved.
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from mmreviewkd.registry import MODELS


@MODELS.register_module()
class NonFiniteInjectLoss(nn.Module):
    """Test helper: a feature loss that turns NaN (or inf) on chosen
    iterations.

    The wrapped loss is multiplied by ``value`` at the given 0-based global
    iterations, so the loss *and* its gradients become non-finite, as in a
    real divergence.

    Args:
        loss (dict): The wrapped loss. Defaults to ``dict(type='HCLLoss')``.
        at_iters (Sequence[int]): 0-based iterations (``runner.iter``).
        value (str): ``'nan'``, ``'inf'`` or ``'-inf'``. Defaults to
            ``'nan'``.
    """

    def __init__(self,
                 loss: dict = dict(type='HCLLoss'),
                 at_iters: Sequence[int] = (),
                 value: str = 'nan') -> None:
        super().__init__()
        cfg = dict(loss)
        cfg.setdefault('_scope_', 'mmreviewkd')
        self.loss = MODELS.build(cfg)
        self.at_iters = {int(i) for i in at_iters}
        self.value = float(value)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        out = self.loss(*args, **kwargs)
        hub = MessageHub.get_current_instance()
        if hub.get_info('iter', -1) in self.at_iters:
            return out * self.value
        return out
