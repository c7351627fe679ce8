# Copyright (c) mmreviewkd contributors. All rights reserved.
import math
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from mmreviewkd.registry import HOOKS
from mmreviewkd.utils.checkpoint_io import read_last_checkpoint
from mmreviewkd.utils.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    """Training stopped because a loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training, or skip the step, when a loss becomes NaN or infinite.

    After every train iteration the logged losses (every output whose name
    contains ``'loss'``, e.g. ``loss_cls`` and ``loss_hcl``) are checked; in
    distributed runs the verdict is shared, so all ranks act together.

    - ``action='stop'`` (default): raise :class:`NonFiniteLossError` naming
      the non-finite terms, the iteration and the last checkpoint saved
      before it (the hook runs before ``CheckpointHook``, so no checkpoint
      with the broken weights is written).
    - ``action='skip'``: the optimizer step of such an iteration is skipped:
      a step pre-hook on the optimizer drops all gradients when any of them
      is non-finite (parameters, momentum and Adam moments stay untouched),
      and buffers changed by that forward (BN running statistics) are
      restored. A warning names the terms; after ``max_consecutive_skips``
      such iterations in a row training stops as in ``'stop'``. With
      ``AmpOptimWrapper`` (fp16), overflowing gradients are already skipped
      by its loss scaler.

    Args:
        action (str): ``'stop'`` or ``'skip'``. Defaults to ``'stop'``.
        max_consecutive_skips (int): Used with ``'skip'``. Defaults to 5.
        restore_buffers (bool): Used with ``'skip'``: snapshot the buffers of
            modules in train mode before each iteration and put them back
            after a skipped one. Defaults to True.
    """

    # after LoggerHook (BELOW_NORMAL), so the NaN shows in the log, and
    # before CheckpointHook (VERY_LOW), so no broken checkpoint is written
    priority = 'LOW'

    def __init__(self,
                 action: str = 'stop',
                 max_consecutive_skips: int = 5,
                 restore_buffers: bool = True) -> None:
        if action not in ('stop', 'skip'):
            raise ValueError(f'NonFiniteLossHook: action must be "stop" or '
                             f'"skip", got {action!r}.')
        if max_consecutive_skips < 1:
            raise ValueError(f'NonFiniteLossHook: max_consecutive_skips must '
                             f'be >= 1, got {max_consecutive_skips}.')
        self.action = action
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.restore_buffers = restore_buffers
        self._handles: list = []
        self._step_skipped = False
        self._consecutive = 0
        self._saved_buffers: List[Tuple[torch.Tensor, torch.Tensor]] = []

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _optimizers(runner) -> list:
        wrapper = runner.optim_wrapper
        wrappers = list(wrapper.values()) if isinstance(
            wrapper, OptimWrapperDict) else [wrapper]
        return [w.optimizer for w in wrappers]

    def before_train(self, runner) -> None:
        self._consecutive = 0
        if self.action == 'skip':
            self._handles = [
                optimizer.register_step_pre_hook(self._drop_non_finite_step)
                for optimizer in self._optimizers(runner)
            ]

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _drop_non_finite_step(self, optimizer, args, kwargs) -> None:
        """Optimizer step pre-hook: without gradients the step leaves every
        parameter (and its optimizer state) as it is."""
        grads = [
            p.grad for group in optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]
        if not grads:
            return None
        norm = torch.stack([g.detach().abs().max() for g in grads]).max()
        if bool(torch.isfinite(norm)):
            return None
        for group in optimizer.param_groups:
            for p in group['params']:
                p.grad = None
        self._step_skipped = True
        return None

    # -------------------------------------------------------------- iteration
    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        self._step_skipped = False
        if self.action == 'skip' and self.restore_buffers:
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            self._saved_buffers = [(buf, buf.detach().clone())
                                   for module in model.modules()
                                   if module.training
                                   for buf in module.buffers(recurse=False)]

    @staticmethod
    def non_finite_terms(outputs: Optional[dict]) -> Dict[str, float]:
        """The loss outputs (names containing ``'loss'``) that are NaN/inf;
        the total ``loss`` is left out when a term explains it."""
        bad = {}
        for key, value in (outputs or {}).items():
            if 'loss' not in key:
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach()
            try:
                number = float(value)
            except (TypeError, ValueError, RuntimeError):
                continue
            if not math.isfinite(number):
                bad[key] = number
        if len(bad) > 1:
            bad.pop('loss', None)
        return bad

    @staticmethod
    def non_finite_inputs(data_batch) -> Optional[str]:
        """How many samples of the batch's (floating point) inputs hold
        NaN/inf, e.g. ``'2 of 8 samples'``; None if none do."""
        inputs = data_batch.get('inputs') if isinstance(data_batch,
                                                        dict) else None
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs)
        samples = [
            x for x in (inputs or [])
            if isinstance(x, torch.Tensor) and x.is_floating_point()
        ]
        bad = sum(not bool(torch.isfinite(x).all()) for x in samples)
        return f'{bad} of {len(inputs)} samples' if bad else None

    @staticmethod
    def last_checkpoint(runner) -> Optional[str]:
        """The newest checkpoint saved by ``CheckpointHook``, if any."""
        path = runner.message_hub.get_info('last_ckpt')
        if path:
            return str(path)
        return read_last_checkpoint(runner.work_dir)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad = self.non_finite_terms(outputs)
        triggered = bool(bad) or self._step_skipped
        if is_distributed():
            flag = torch.tensor([1.0 if triggered else 0.0])
            all_reduce(flag, op='max')
            triggered = bool(flag.item() > 0)
        if not triggered:
            self._consecutive = 0
            self._saved_buffers = []
            return
        iteration, epoch = runner.iter + 1, runner.epoch + 1
        bad_inputs = self.non_finite_inputs(data_batch)
        if bad_inputs:  # blame the data, not the losses computed from it
            terms = (f'the input batch itself holds NaN/inf values '
                     f'({bad_inputs}); check the dataset files and '
                     f'transforms, not the learning rate')
        elif bad:
            terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        elif self._step_skipped:
            terms = 'finite losses but non-finite gradients'
        else:
            terms = 'a non-finite loss on another rank'
        where = f'at iteration {iteration} (epoch {epoch})'
        if self.action == 'skip':
            self._consecutive += 1
            if self.restore_buffers:
                with torch.no_grad():
                    for buf, saved in self._saved_buffers:
                        buf.copy_(saved)
            self._saved_buffers = []
            if self._consecutive <= self.max_consecutive_skips:
                runner.logger.warning(
                    f'Non-finite loss {where}: {terms}; the optimizer step '
                    f'was skipped ({self._consecutive} in a row, at most '
                    f'{self.max_consecutive_skips}).')
                return
            where += (f', non-finite for {self._consecutive} iterations '
                      f'in a row')
        ckpt = self.last_checkpoint(runner)
        advice = (f'then resume with `tools/train.py CONFIG --resume {ckpt}`'
                  if ckpt else 'then train again')
        fix = 'Fix the data' if bad_inputs else (
            'Lower the learning rate or the loss weights (or use '
            'NonFiniteLossHook(action="skip"))')
        raise NonFiniteLossError(
            f'non-finite loss {where}: {terms}. Training stopped; last good '
            f'checkpoint: {ckpt or "none (none was saved yet)"}. {fix}, '
            f'{advice}.')
