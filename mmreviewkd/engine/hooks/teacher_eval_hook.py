# Copyright (c) mmreviewkd contributors. All rights reserved.
from typing import Dict, Optional

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

    A line before the evaluation says how many samples it covers, and one
    warning line follows when the teacher looks random or wrong:

    - classification: ``accuracy/top1`` at or below 1.5 x chance
      (``100 / num_classes`` %, ``num_classes`` of the teacher's head, else
      of the student's, else the val dataset's ``classes``);
    - detection: every ``...mAP`` metric is 0;
    - any task: the checked metric (``metric``) is below ``min_metric``.

    Args:
        enabled (bool): Switch. Defaults to True.
        max_iters (int, optional): Evaluate on at most this many val batches
            (None: the whole val set).
        min_metric (float, optional): Warn when the teacher's ``metric`` is
            below this value (in the evaluator's units, e.g. 70.0 for a
            top-1 of 70 %). Defaults to None (only the chance-level and
            zero-AP checks).
        metric (str, optional): The metric ``min_metric`` applies to.
            Defaults to ``accuracy/top1`` when present, else the first
            ``...mAP`` metric, else the first metric.
    """

    priority = 'LOW'

    def __init__(self,
                 enabled: bool = True,
                 max_iters: Optional[int] = None,
                 min_metric: Optional[float] = None,
                 metric: Optional[str] = None) -> None:
        self.enabled = enabled
        self.max_iters = max_iters
        self.min_metric = None if min_metric is None else float(min_metric)
        self.metric = metric

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
        size = len(val_loop.dataloader.dataset)
        if self.max_iters is not None:
            size = min(size, self.max_iters * val_loop.dataloader.batch_size)
        runner.logger.info(f'Evaluating the teacher on {size} val samples '
                           f'...')
        model.eval()
        with torch.no_grad():
            for i, data_batch in enumerate(val_loop.dataloader):
                if self.max_iters is not None and i >= self.max_iters:
                    break
                outputs = model.teacher_predict(data_batch)
                evaluator.process(data_samples=outputs, data_batch=data_batch)
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
        if self.min_metric is not None \
                and self._checked_metric(metrics) is None:
            runner.logger.warning(
                f'TeacherEvalHook: metric {self.metric!r} is not among the '
                f'teacher\'s metrics ({", ".join(metrics)}); min_metric not '
                f'checked.')
        problem = self.check_metrics(metrics,
                                     self._num_classes(model, val_loop))
        if problem is not None:
            ckpt = getattr(model, 'teacher_ckpt', None)
            runner.logger.warning(
                f'TeacherEvalHook: {problem}: the teacher is probably random '
                f'or wrong; check teacher_ckpt ({ckpt!r}).')

    @staticmethod
    def _num_classes(model, val_loop) -> Optional[int]:
        """The classes the teacher (else the student) head predicts, else
        the classes of the val dataset's metainfo."""
        for part in ('teacher', 'student'):
            head = getattr(getattr(model, part, None), 'head', None)
            num_classes = getattr(head, 'num_classes', None)
            if isinstance(num_classes, int) and num_classes > 0:
                return num_classes
        dataset = getattr(val_loop.dataloader, 'dataset', None)
        metainfo = getattr(dataset, 'metainfo', None) or {}
        classes = metainfo.get('classes') if isinstance(metainfo,
                                                        dict) else None
        return len(classes) if classes else None

    def _checked_metric(self, metrics: Dict[str, float]) -> Optional[str]:
        if self.metric is not None:
            return self.metric if self.metric in metrics else None
        if 'accuracy/top1' in metrics:
            return 'accuracy/top1'
        aps = [k for k in metrics if k.endswith('mAP')]
        return aps[0] if aps else next(iter(metrics), None)

    def check_metrics(self,
                      metrics: Dict[str, float],
                      num_classes: Optional[int] = None) -> Optional[str]:
        """What looks wrong about the teacher's metrics, or None.

        Args:
            metrics (dict): The evaluator's results.
            num_classes (int, optional): Classes, for the chance level of
                ``accuracy/top1`` (in %).

        Returns:
            str or None: A description of the problem.
        """
        top1 = metrics.get('accuracy/top1')
        if isinstance(top1, (int, float)) and num_classes:
            chance = 100.0 / num_classes
            if top1 <= 1.5 * chance:
                return (f'accuracy/top1 {top1:.2f} is at chance level for '
                        f'{num_classes} classes (<= 1.5 x {chance:.2f})')
        aps = {
            k: v
            for k, v in metrics.items()
            if k.endswith('mAP') and isinstance(v, (int, float))
        }
        if aps and all(v == 0 for v in aps.values()):
            return f'{", ".join(aps)} {"is" if len(aps) == 1 else "are"} 0'
        if self.min_metric is not None:
            key = self._checked_metric(metrics)
            value = metrics.get(key) if key is not None else None
            if isinstance(value, (int, float)) and value < self.min_metric:
                return (f'{key} {value:.4f} is below min_metric '
                        f'{self.min_metric}')
        return None
