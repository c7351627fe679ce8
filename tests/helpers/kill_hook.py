# Copyright (c) mmreviewkd contributors. All rights reserved.
import os
import signal

from mmengine.hooks import Hook

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class KillAfterEpochHook(Hook):
    """Test helper: SIGKILL the own process right after epoch ``epoch``
    (1-based) has ended and its checkpoint is written, like a preempted or
    crashed job (no cleanup, no ``after_train``).

    Args:
        epoch (int): The epoch after which the process dies.
    """

    # after CheckpointHook (VERY_LOW), so epoch_<epoch>.pth exists
    priority = 'LOWEST'

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
