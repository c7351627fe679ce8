# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Read intermediate features of a model through forward hooks.

A :class:`FeatureTap` records the forward outputs of named submodules while
the model runs its ordinary code path (``student.loss`` or
``teacher.extract_feat``), so no second backbone pass is needed.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.utils.errors import ConfigError

Point = Tuple[str, bool]


def resolve_feature_points(model: nn.Module, preact: bool,
                           who: str) -> Tuple[List[Point], Optional[str]]:
    """Default ReviewKD feature points of an mmpretrain/mmdet model.

    Classifiers (``backbone`` + ``neck`` + ``head``): every backbone stage
    (via the backbone's ``review_feature_points(preact)`` or, for mmpretrain
    ResNets, their ``res_layers``) plus the pooled neck output as the deepest
    level. Detectors (``backbone`` + ``neck``, no ``head``): every neck (FPN)
    output, no pooled level.

    Args:
        model (nn.Module): The student or teacher.
        preact (bool): Pre-activation stage features (classification).
        who (str): ``'student'`` or ``'teacher'``, for error messages.

    Returns:
        tuple: ``(points, pooled_from)`` where ``points`` are
        ``(module name, apply relu)`` pairs and ``pooled_from`` names the
        module whose output is global-average pooled already (or None).
    """
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        raise ConfigError(
            f'ReviewKDDistiller: cannot infer the {who} feature points of '
            f'{type(model).__name__} (it has no `backbone`); set '
            f'{who}_feats=dict(points=[module names]).')
    is_classifier = hasattr(model, 'head') and not hasattr(model, 'rpn_head') \
        and not hasattr(model, 'bbox_head')
    if not is_classifier:
        if getattr(model, 'neck', None) is None:
            raise ConfigError(
                f'ReviewKDDistiller: the {who} detector '
                f'{type(model).__name__} has no neck; ReviewKD distils the '
                f'FPN outputs. Set {who}_feats=dict(points=[...]).')
        return [('neck', False)], None
    if hasattr(backbone, 'review_feature_points'):
        points = [(f'backbone.{name}', relu)
                  for name, relu in backbone.review_feature_points(preact)]
    elif hasattr(backbone, 'res_layers'):  # mmpretrain ResNet family
        if preact:
            raise ConfigError(
                f'ReviewKDDistiller: {type(backbone).__name__} offers no '
                f'pre-activation features; set {who}_feats=dict('
                f'preact=False) (ImageNet ResNets use post-ReLU stages).')
        points = [(f'backbone.{name}', False) for name in backbone.res_layers]
    else:
        raise ConfigError(
            f'ReviewKDDistiller: cannot infer the stage features of the '
            f'{who} backbone {type(backbone).__name__}; set '
            f'{who}_feats=dict(points=[module names, shallow to deep]).')
    if getattr(model, 'neck', None) is None:
        raise ConfigError(
            f'ReviewKDDistiller: the {who} classifier has no neck; the pooled '
            f'level is read from a GlobalAveragePooling neck. Add one or set '
            f'{who}_feats=dict(pooled=None).')
    return points, 'neck'


def _last_tensor(out: Union[torch.Tensor, Sequence]) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


class FeatureTap:
    """Records features of ``model`` while it runs.

    Args:
        model (nn.Module): The model to read from.
        points (Sequence[tuple[str, bool]]): ``(module name, relu)``, shallow
            to deep. A module that returns a tuple/list (e.g. an FPN neck)
            contributes one level per element. ``relu`` applies a non-inplace
            ReLU to the recorded output.
        pooled_from (str, optional): A module whose output (or last output)
            is the pooled embedding (N, C) or (N, C, 1, 1); appended as the
            deepest level, shaped (N, C, 1, 1).
    """

    def __init__(self,
                 model: nn.Module,
                 points: Sequence[Point],
                 pooled_from: Optional[str] = None) -> None:
        modules: Dict[str, nn.Module] = dict(model.named_modules())
        names = [p[0] for p in points] + ([pooled_from] if pooled_from else [])
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(
                f'FeatureTap: {type(model).__name__} has no submodule(s) '
                f'{missing}; check the feature point names.')
        self.points = [(str(n), bool(r)) for n, r in points]
        self.pooled_from = pooled_from
        self._model = model
        self._names = names
        self._outputs: List[Optional[object]] = [None] * len(names)
        self._hooked = [modules[name] for name in names]
        self._handles = [
            module.register_forward_hook(self._make_hook(i))
            for i, module in enumerate(self._hooked)
        ]

    def _make_hook(self, index: int):

        def hook(module, inputs, output):
            self._outputs[index] = output

        return hook

    def pop(self) -> List[torch.Tensor]:
        """Return the recorded levels (shallow to deep) and forget them."""
        if any(o is None for o in self._outputs):
            missed = [
                name for (name, _), o in zip(
                    self.points + [(self.pooled_from, False)], self._outputs)
                if o is None
            ]
            raise ConfigError(
                f'FeatureTap: module(s) {missed} did not run in the forward '
                f'pass; the feature points do not match the model.')
        feats: List[torch.Tensor] = []
        for (_, relu), out in zip(self.points, self._outputs):
            outs = out if isinstance(out, (list, tuple)) else [out]
            feats.extend(F.relu(o) if relu else o for o in outs)
        if self.pooled_from is not None:
            pooled = _last_tensor(self._outputs[-1])
            feats.append(pooled.reshape(pooled.shape[0], -1, 1, 1))
        self._outputs = [None] * len(self._outputs)
        return feats

    def clear(self) -> None:
        """Forget recorded outputs, and follow modules that were replaced
        since the hooks were set (BN <-> SyncBN conversion by the runner
        swaps BN modules, which can be feature points)."""
        self._outputs = [None] * len(self._outputs)
        if not self._handles:
            return
        for i, name in enumerate(self._names):
            module = self._model.get_submodule(name)
            if module is not self._hooked[i]:
                self._handles[i].remove()
                self._hooked[i] = module
                self._handles[i] = module.register_forward_hook(
                    self._make_hook(i))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
