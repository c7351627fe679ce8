# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Say when the distillation losses drown or miss the student's task loss."""
import math
from typing import List, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class DistillGradRatioHook(Hook):
    """Watch the gradient ratio distillation / task in the student.

    Every ``interval`` iterations of an epoch (its first included) the
    distiller measures the norms of the gradients that the task loss and the
    sum of its distillation losses send into the student's last stage
    (logged as ``grad_norm.task``, ``grad_norm.distill`` and ``grad_ratio``,
    two extra backward passes through that stage and the layers after it).
    When, for a whole epoch trained at full weights (warm-up over), every
    measured ratio is above ``high`` (the distillation dominates: the task
    is barely learnt) or below ``low`` (the distillation does nothing), one
    warning says so, with the direction to move ``loss_weight``. Each kind
    of warning is given once per run.

    Args:
        interval (int): Measure every ``interval`` iterations. Defaults to
            50.
        high (float): Ratio above which the distillation dominates.
            Defaults to 100.
        low (float): Ratio below which the distillation vanishes. Defaults
            to 0.01.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 50,
                 high: float = 100.0,
                 low: float = 0.01) -> None:
        if int(interval) < 1 or not 0 < low < high:
            raise ValueError(
                f'DistillGradRatioHook: needs interval >= 1 and 0 < low < '
                f'high, got interval={interval}, low={low}, high={high}.')
        self.interval = int(interval)
        self.high, self.low = float(high), float(low)
        self._ratios: List[float] = []
        self._warned = set()

    @staticmethod
    def _distiller(runner):
        model = runner.model
        model = model.module if is_model_wrapper(model) else model
        return model if hasattr(model, 'grad_probe') else None

    def before_train_epoch(self, runner) -> None:
        self._ratios = []

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        model = self._distiller(runner)
        if model is not None and batch_idx % self.interval == 0:
            model.grad_probe = True

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        model = self._distiller(runner)
        if model is None or model.last_grad_probe is None:
            return
        probe, model.last_grad_probe = model.last_grad_probe, None
        if probe['full_weight'] and math.isfinite(probe['ratio']):
            self._ratios.append(probe['ratio'])

    def after_train_epoch(self, runner) -> None:
        ratios, self._ratios = self._ratios, []
        if not ratios:
            return
        model = self._distiller(runner)
        weights = self._weights(model)
        epoch = runner.epoch  # already advanced: the epoch just trained
        if min(ratios) > self.high and 'high' not in self._warned:
            self._warned.add('high')
            runner.logger.warning(
                f'DistillGradRatioHook: in epoch {epoch} the distillation '
                f'losses sent {min(ratios):.3g}x to {max(ratios):.3g}x the '
                f'task loss\'s gradient into the student\'s last stage: they '
                f'dominate and the task is barely learnt; lower {weights} '
                f'(e.g. by {self._factor(min(ratios) / self.high)}).')
        elif max(ratios) < self.low and 'low' not in self._warned:
            self._warned.add('low')
            runner.logger.warning(
                f'DistillGradRatioHook: in epoch {epoch} the distillation '
                f'losses sent only {min(ratios):.3g}x to {max(ratios):.3g}x '
                f'the task loss\'s gradient into the student\'s last stage: '
                f'the distillation has next to no effect; raise {weights} '
                f'(e.g. by {self._factor(self.low / max(ratios))}).')

    @staticmethod
    def _factor(excess: float) -> str:
        """``'10x'``, ``'100x'``: the power of ten that brings the ratio
        back inside the bounds, at least 10."""
        return f'{10 ** max(1, math.ceil(math.log10(max(excess, 1.0)))):g}x'

    @staticmethod
    def _weights(model) -> str:
        """The config keys of the active distillation weights."""
        names = []
        if getattr(model, 'connector', None) is not None:
            names.append(f'model.loss_weight (now {model.loss_weight:g})')
        for name, term in getattr(model, 'distill_terms', {}).items():
            names.append(f'model.distill_terms.{name}.loss_weight '
                         f'(now {term.loss_weight:g})')
        return ' / '.join(names) or 'the distillation weights'
