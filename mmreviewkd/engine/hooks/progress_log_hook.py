# Copyright (c) mmreviewkd contributors. All rights reserved.
import os.path as osp
from typing import Optional

from mmengine.hooks import Hook, LoggerHook

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class ProgressLogHook(Hook):
    """Progress lines (with ETA) at least every 10 % of an epoch, and a line
    before the first training iteration.

    MMEngine's ``LoggerHook`` logs every ``interval`` iterations (100 in
    mmpretrain's runtime, 50 in mmdet's); on a small dataset or a large
    batch an epoch is then one line, or none for many minutes. In
    ``before_train`` this hook lowers the ``LoggerHook``'s interval to
    ``max(1, iters_per_epoch // min_lines_per_epoch)`` when it is larger
    (it never raises it), with ``iters_per_epoch = len(train_dataloader)``,
    and logs the interval it uses. It also says, once, when the first
    training iteration starts: data loader workers, memory allocation and
    cuDNN autotuning can make it slow, and without that line a silent log
    looks like a hang.

    ``tools/train.py`` adds it to every config (with
    ``adjust_interval=False`` when ``--cfg-options`` sets
    ``default_hooks.logger.interval``).

    Args:
        min_lines_per_epoch (int): Progress lines per epoch at least.
            Defaults to 10.
        adjust_interval (bool): Lower the logger interval. False keeps the
            configured interval (the first-iteration line stays).
            Defaults to True.
    """

    priority = 'NORMAL'

    def __init__(self,
                 min_lines_per_epoch: int = 10,
                 adjust_interval: bool = True) -> None:
        from mmreviewkd.utils.errors import ConfigError
        if int(min_lines_per_epoch) < 1:
            raise ConfigError(f'ProgressLogHook: min_lines_per_epoch must be '
                              f'>= 1, got {min_lines_per_epoch}.')
        self.min_lines_per_epoch = int(min_lines_per_epoch)
        self.adjust_interval = adjust_interval
        self._first_announced = False

    @staticmethod
    def _logger_hook(runner) -> Optional[LoggerHook]:
        for hook in runner.hooks:
            if isinstance(hook, LoggerHook):
                return hook
        return None

    def before_train(self, runner) -> None:
        """Lower the LoggerHook's interval to 10 % of an epoch."""
        self._first_announced = False
        if not self.adjust_interval:
            return
        logger_hook = self._logger_hook(runner)
        if logger_hook is None:
            return
        try:
            iters = len(runner.train_dataloader)
        except TypeError:  # an iterable dataset without a length
            return
        target = max(1, iters // self.min_lines_per_epoch)
        if logger_hook.interval > target:
            runner.logger.info(
                f'Progress is logged every '
                f'{f"{target} iterations" if target > 1 else "iteration"} '
                f'(an epoch is {iters}; default_hooks.logger.interval was '
                f'{logger_hook.interval}; set it in --cfg-options to keep '
                f'it).')
            logger_hook.interval = target

    def before_train_epoch(self, runner) -> None:
        """Announce the first training iteration of this run."""
        if self._first_announced:
            return
        self._first_announced = True
        runner.logger.info(
            f'First training iteration (epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1}); it can be slow: data loader workers start, '
            f'memory is allocated, kernels are selected ...')


@HOOKS.register_module()
class ParamInitLogHook(Hook):
    """Keep MMEngine's per-parameter initialisation dump out of the log.

    When training starts, ``BaseModule.init_weights`` writes three lines per
    parameter ("The value is the same before and after calling
    `init_weights`" ...) straight into the log file: hundreds of lines for
    a CIFAR distiller, thousands for a detector, between the last setup line
    and the first progress line. From ``before_run`` (just before the
    weights are initialised) to ``before_train`` this hook sends that dump
    to ``<log_dir>/param_init.txt`` (:func:`~mmreviewkd.utils.run_log.
    divert_init_info`) and logs one line naming the file. Log records are
    not affected.

    ``tools/train.py`` adds it unless ``--verbose-log`` is given.
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: str = 'param_init.txt') -> None:
        self.filename = filename
        self._restore = None

    def before_run(self, runner) -> None:
        from mmreviewkd.utils.run_log import divert_init_info
        self._restore = divert_init_info(
            runner.logger, osp.join(runner.log_dir, self.filename))

    def before_train(self, runner) -> None:
        if self._restore is None:
            return
        restore, self._restore = self._restore, None
        if restore():
            runner.logger.info(f'Parameter initialisation details: '
                               f'{osp.join(runner.log_dir, self.filename)}')

    def after_run(self, runner) -> None:
        self.before_train(runner)  # training ended before before_train
