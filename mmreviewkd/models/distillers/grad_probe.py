# Copyright (c) mmreviewkd contributors. All rights reserved.
"""How hard the task and the distillation pull on the student's last stage
(measured for :class:`~mmreviewkd.engine.hooks.DistillGradRatioHook`)."""
from typing import Dict, Iterable, List, Sequence

import torch
import torch.nn as nn

from .level_pairing import Level


def last_stage_params(student: nn.Module,
                      levels: Sequence[Level]) -> List[nn.Parameter]:
    """Trainable parameters of the deepest distilled student stage that has
    any: the module of the deepest non-pooled level, or its closest parent
    with parameters (a ``preact`` tap has none); all of the student's as a
    last resort."""
    for level in reversed(levels):
        if level.pooled:
            continue
        name = level.name.split('[')[0]  # 'neck[2]' -> 'neck'
        while True:
            params = [
                p for p in student.get_submodule(name).parameters()
                if p.requires_grad
            ]
            if params or '.' not in name:
                break
            name = name.rsplit('.', 1)[0]
        if params:
            return params
    return [p for p in student.parameters() if p.requires_grad]


def _total(losses: dict, keys: Iterable[str]):
    parts = []
    for key in keys:
        value = losses[key]
        parts.extend(value if isinstance(value, list) else [value])
    return sum(parts)


def grad_norms(losses: Dict[str, torch.Tensor], distill_keys: Sequence[str],
               params: List[nn.Parameter]) -> Dict[str, torch.Tensor]:
    """Norms of the gradients of the task loss (the ``student.*loss*``
    terms) and of the distillation losses (``distill_keys``) with respect
    to ``params``, and their ratio distillation / task.

    Two extra backward passes through the part of the graph between the
    losses and ``params``; the graph is kept for the real backward.

    Returns:
        dict: ``grad_norm.task``, ``grad_norm.distill``, ``grad_ratio``.
    """
    task_keys = [k for k in losses if k.startswith('student.') and 'loss' in k]
    task = _total(losses, task_keys)
    norms = []
    for value in (task, _total(losses, distill_keys)):
        grads = torch.autograd.grad(
            value, params, retain_graph=True, allow_unused=True) \
            if torch.is_tensor(value) and value.requires_grad else []
        norms.append(
            torch.sqrt(
                sum((g.detach().float()**2).sum()
                    for g in grads if g is not None) +
                torch.zeros((), device=params[0].device)))
    return {
        'grad_norm.task': norms[0],
        'grad_norm.distill': norms[1],
        'grad_ratio': norms[1] / norms[0].clamp_min(1e-12)
    }
