# Copyright (c) mmreviewkd contributors. All rights reserved.
"""EMA of a distiller's trainable part: the student and the connector."""
from typing import Dict

import torch.nn as nn
from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper

from mmreviewkd.registry import HOOKS


class DistilledPart(nn.Module):
    """The distiller without its teacher, as one module for the EMA.

    Holds the distiller's own submodules (the same objects, not copies)
    under their own names, except the teacher and anything inside it, so its
    ``state_dict()`` keys (``student.*``, ``connector.*``, ...) are exactly
    the distiller's keys of those parts: ``ema_state_dict`` in checkpoints
    lines up with the distiller's ``state_dict``.

    Args:
        model (nn.Module): The distiller (unwrapped).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        teacher = model._modules.get('teacher')
        in_teacher = set() if teacher is None else {
            id(m)
            for m in teacher.modules()
        }
        for name, module in model.named_children():
            if module is not None and id(module) not in in_teacher:
                self.add_module(name, module)

    def forward(self, *args, **kwargs):  # pragma: no cover
        raise RuntimeError('DistilledPart holds weights for the EMA only.')


@HOOKS.register_module()
class DistillerEMAHook(EMAHook):
    """MMEngine's :class:`~mmengine.hooks.EMAHook` for a ReviewKD distiller:
    the exponential moving average covers the student and the connector,
    never the frozen teacher.

    A ReviewKD config that inherits a student config with ``EMAHook``
    (ConvNeXt / Swin recipes, RTMDet, YOLOX) gets this hook instead, with
    the same arguments (:func:`~mmreviewkd.utils.distill_runtime.
    prepare_distill_runtime`). Everything else is EMAHook's: validation and
    testing run with the averaged weights; checkpoints hold the averaged
    weights in ``state_dict`` (so ``extract_student.py`` and
    ``StudentExportHook`` give the averaged student) and the raw ones in
    ``ema_state_dict``, under the distiller's keys (``module.student.*``,
    ``module.connector.*``; no teacher). On a model without a ``teacher``
    it is EMAHook.

    Args:
        **kwargs: EMAHook's arguments (``ema_type``, ``momentum``,
            ``update_buffers``, ``begin_iter`` / ``begin_epoch``,
            ``strict_load``, ...).
    """

    def before_run(self, runner) -> None:
        """Create the EMA copy of the student and the connector."""
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        if model._modules.get('teacher') is None:
            super().before_run(runner)
            return
        from mmengine.registry import MODELS
        self.src_model = DistilledPart(model)
        self.ema_model = MODELS.build(
            self.ema_cfg, default_args=dict(model=self.src_model))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Resume the EMA state, or start it from loaded weights; the
        teacher's weights in the checkpoint are not the EMA's business."""
        if 'ema_state_dict' in checkpoint and runner._resume:
            super().after_load_checkpoint(runner, checkpoint)
            return
        own: Dict = self.src_model.state_dict()
        state = {k: v for k, v in checkpoint['state_dict'].items() if k in own}
        super().after_load_checkpoint(runner,
                                      dict(checkpoint, state_dict=state))
