# Copyright (c) mmreviewkd contributors. All rights reserved.
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class TeacherEvalHook(Hook):
    """Evaluate the teacher once on the validation set before distillation.

    A wrong or missing teacher checkpoint then shows up in the log within the
    first minute (an untrained teacher scores at chance level) instead of as
    a student that quietly fails to improve.

    The metrics are logged as ``teacher/<metric>`` and stored in the message
    hub; they do not go through the val loop, so they never count as a
    "best" checkpoint.

    Args:
        enabled (bool): Switch. Defaults to True.
        max_iters (int, optional): Evaluate on at most this many val batches
            (None: the whole val set).
    """

    priority = 'LOW'

    def __init__(self, enabled: bool = True, max_iters=None) -> None:
        self.enabled = enabled
        self.max_iters = max_iters

    def before_train(self, runner) -> None:
        if not self.enabled:
            return
        if runner._val_loop is None or runner.val_dataloader is None:
            runner.logger.warning(
                'TeacherEvalHook: no val_dataloader; teacher not evaluated.')
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'teacher_predict'):
            runner.logger.warning(
                f'TeacherEvalHook: {type(model).__name__} has no teacher; '
                f'skipped.')
            return
        val_loop = runner.val_loop
        evaluator = val_loop.evaluator
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for i, data_batch in enumerate(val_loop.dataloader):
                if self.max_iters is not None and i >= self.max_iters:
                    break
                outputs = model.teacher_predict(data_batch)
                evaluator.process(data_samples=outputs, data_batch=data_batch)
        size = len(val_loop.dataloader.dataset)
        if self.max_iters is not None:
            size = min(size, self.max_iters * val_loop.dataloader.batch_size)
        metrics = evaluator.evaluate(size)
        model.train(was_training)
        if not metrics:
            runner.logger.warning(
                'TeacherEvalHook: the evaluator returned no teacher metrics '
                '(e.g. no detection above the score threshold); is the '
                'teacher checkpoint right?')
            return
        text = ', '.join(f'{k}: {v:.4f}' if isinstance(v, float) else
                         f'{k}: {v}' for k, v in metrics.items())
        runner.logger.info(f'Teacher on the val set before distillation: '
                           f'{text}')
        for k, v in metrics.items():
            runner.message_hub.update_info(f'teacher/{k}', v)
