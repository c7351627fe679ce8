# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Read intermediate features of a model through forward hooks.

A :class:`FeatureTap` records the forward outputs of named submodules while
the model runs its ordinary code path (``student.loss`` or
``teacher.extract_feat``), so no second backbone pass is needed.
:func:`build_feature_tap` decides where to read: the backbone's own
``review_feature_points``, the ``res_layers`` of mmpretrain ResNets, a
detector's neck outputs, or, for any other backbone, the stages found by
:mod:`.stage_discovery`; ``points`` / ``pooled`` override.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.utils.errors import ConfigError

from .stage_discovery import ForwardRecord, returned_grid, tokens_to_map

#: ``(module name, apply relu)`` or ``(module name, relu, grid module)``
Point = Union[Tuple[str, bool], Tuple[str, bool, Optional[str]]]


def _is_classifier(model: nn.Module) -> bool:
    return hasattr(model, 'head') and not hasattr(model, 'rpn_head') \
        and not hasattr(model, 'bbox_head')


class _Probe:
    """One recorded dummy forward of ``model``, run when first needed."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int],
                 who: str) -> None:
        self.model, self.input_shape, self.who = model, input_shape, who
        self._record: Optional[ForwardRecord] = None

    @property
    def record(self) -> ForwardRecord:
        if self._record is None:
            self._record = ForwardRecord(self.model, self.input_shape,
                                         self.who)
        return self._record


def _default_pooled(model: nn.Module, who: str,
                    probe: _Probe) -> Optional[str]:
    """The neck of a classifier, or its backbone when that returns the
    pooled embedding itself (ConvNeXt); None for detectors."""
    if not _is_classifier(model):
        return None
    if getattr(model, 'neck', None) is not None:
        return 'neck'
    root = probe.record.last_call('backbone')
    if root is not None and root.held is not None and root.held.dim() == 2:
        return 'backbone'
    raise ConfigError(
        f'ReviewKDDistiller: the {who} classifier has no neck and its '
        f'backbone returns no pooled (N, C) embedding; the pooled level is '
        f'read from a GlobalAveragePooling neck. Add one or set '
        f'{who}_feats=dict(pooled=None).')


def _default_points(model: nn.Module, preact: bool, who: str,
                    probe: _Probe) -> List[Point]:
    if getattr(model, 'backbone', None) is None:
        raise ConfigError(
            f'ReviewKDDistiller: cannot infer the {who} feature points of '
            f'{type(model).__name__} (it has no `backbone`); set '
            f'{who}_feats=dict(points=[module names]).')
    if not _is_classifier(model):
        if getattr(model, 'neck', None) is None:
            raise ConfigError(
                f'ReviewKDDistiller: the {who} detector '
                f'{type(model).__name__} has no neck; ReviewKD distils the '
                f'FPN outputs. Set {who}_feats=dict(points=[...]).')
        return [('neck', False)]
    backbone = model.backbone
    if hasattr(backbone, 'review_feature_points'):
        return [(f'backbone.{name}', relu)
                for name, relu in backbone.review_feature_points(preact)]
    if preact:
        raise ConfigError(
            f'ReviewKDDistiller: {type(backbone).__name__} offers no '
            f'pre-activation features; set {who}_feats=dict(preact=False) '
            f'(post-activation stages, as ImageNet ResNets use).')
    if hasattr(backbone, 'res_layers'):  # mmpretrain ResNet family
        return [(f'backbone.{name}', False) for name in backbone.res_layers]
    return [(call.name, False, call.grid_from)
            for call in probe.record.stages()]


def resolve_feature_points(
    model: nn.Module,
    preact: bool,
    who: str,
    input_shape: Sequence[int] = (3, 32, 32)
) -> Tuple[List[Point], Optional[str]]:
    """Default ReviewKD feature points of an mmpretrain/mmdet model.

    Classifiers (``backbone`` + ``head``): every backbone stage (via the
    backbone's ``review_feature_points(preact)``, the ``res_layers`` of
    mmpretrain ResNets, or else discovered from a dummy forward, see
    :mod:`.stage_discovery`) plus the pooled embedding as the deepest level
    (the neck's output, or the backbone's when there is no neck and the
    backbone returns it). Detectors (``backbone`` + ``neck``, no ``head``):
    every neck (FPN) output, no pooled level.

    Args:
        model (nn.Module): The student or teacher.
        preact (bool): Pre-activation stage features (classification).
        who (str): ``'student'`` or ``'teacher'``, for error messages.
        input_shape (Sequence[int]): (C, H, W) of the dummy input, for
            backbones whose stages are discovered.

    Returns:
        tuple: ``(points, pooled_from)`` where ``points`` are
        ``(module name, apply relu)`` pairs, or ``(name, relu, grid
        module)`` for token outputs, and ``pooled_from`` names the module
        whose output is the pooled embedding (or None).
    """
    probe = _Probe(model, input_shape, who)
    points = _default_points(model, preact, who, probe)
    return points, _default_pooled(model, who, probe)


def build_feature_tap(model: nn.Module, feats_cfg: Optional[dict], who: str,
                      input_shape: Sequence[int]) -> 'FeatureTap':
    """The tap described by ``student_feats`` / ``teacher_feats``.

    Args:
        model (nn.Module): The student or teacher.
        feats_cfg (dict, optional): ``preact`` (bool), ``points`` (module
            names or ``(name, relu)`` pairs, shallow to deep; default:
            :func:`resolve_feature_points`), ``pooled`` (module whose output
            is the pooled embedding; default the neck for classifiers, also
            when ``points`` are given; None: no pooled level).
        who (str): ``'student'`` or ``'teacher'``.
        input_shape (Sequence[int]): (C, H, W) of the dummy input.

    Returns:
        FeatureTap: Hooks set on ``model``.
    """
    feats_cfg = dict(feats_cfg or {})
    unknown = set(feats_cfg) - {'preact', 'points', 'pooled'}
    if unknown:
        raise ConfigError(
            f'ReviewKDDistiller: unknown keys {sorted(unknown)} in '
            f'{who}_feats; use preact, points, pooled.')
    probe = _Probe(model, input_shape, who)
    points = feats_cfg.get('points')
    if points is None:
        points = _default_points(model, bool(feats_cfg.get('preact', False)),
                                 who, probe)
    else:
        # token outputs (N, E + L, C) need the module returning their grid
        points = [(p, False) if isinstance(p, str) else tuple(p)
                  for p in points]
        points = [
            p if len(p) > 2 else (*p, probe.record.grid_source(p[0]))
            for p in points
        ]
    pooled = feats_cfg['pooled'] if 'pooled' in feats_cfg else \
        _default_pooled(model, who, probe)
    return FeatureTap(model, points, pooled)


def _last_tensor(out: Union[torch.Tensor, Sequence]) -> torch.Tensor:
    return out[-1] if isinstance(out, (list, tuple)) else out


def _describe(out) -> str:
    if torch.is_tensor(out):
        return f'a tensor of shape {tuple(out.shape)}'
    return f'a {type(out).__name__}'


class FeatureTap:
    """Records features of ``model`` while it runs.

    Args:
        model (nn.Module): The model to read from.
        points (Sequence[tuple]): ``(module name, relu)`` or ``(module name,
            relu, grid module)``, shallow to deep. A module that returns a
            tuple/list of maps (e.g. an FPN neck) contributes one level per
            element; one that returns ``(tokens (N, L, C), (h, w))`` gives
            the tokens as an N x C x h x w map; tokens (N, E + L, C) become
            a map on the grid returned by the grid module in the same
            forward (the E leading tokens dropped). ``relu`` applies a
            non-inplace ReLU to the recorded map.
        pooled_from (str, optional): A module whose output (or last output)
            is the pooled embedding (N, C) or (N, C, 1, 1); appended as the
            deepest level, shaped (N, C, 1, 1).
        select (Sequence[Sequence[int] | None], optional): Per point, the
            elements of a tuple output to keep (None: all).
    """

    def __init__(
            self,
            model: nn.Module,
            points: Sequence[Point],
            pooled_from: Optional[str] = None,
            select: Optional[Sequence[Optional[Sequence[int]]]] = None
    ) -> None:
        modules: Dict[str, nn.Module] = dict(model.named_modules())
        points = [tuple(p) + (None, ) * (3 - len(p)) for p in points]
        self.points = [(str(n), bool(r)) for n, r, _ in points]
        self.grids: Dict[str, str] = {n: g for n, _, g in points if g}
        self.pooled_from = pooled_from
        self._select = list(select) if select is not None else \
            [None] * len(points)
        names = [n for n, _ in self.points]
        names += [pooled_from] if pooled_from else []
        names += sorted(set(self.grids.values()) - set(names))
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(
                f'FeatureTap: {type(model).__name__} has no submodule(s) '
                f'{missing}; check the feature point names.')
        self._model = model
        self._names = names
        self._outputs: List[Optional[object]] = [None] * len(names)
        self._hooked = [modules[name] for name in names]
        self._handles = [
            module.register_forward_hook(self._make_hook(i))
            for i, module in enumerate(self._hooked)
        ]
        #: per level of the last :meth:`pop`: (point index, element index),
        #: the pooled level as (-1, 0)
        self.level_sources: List[Tuple[int, int]] = []

    def _make_hook(self, index: int):

        def hook(module, inputs, output):
            self._outputs[index] = output

        return hook

    @property
    def level_names(self) -> List[str]:
        """Module name per level of the last :meth:`pop` (``name[i]`` for
        the i-th map of a tuple output)."""
        names = []
        for p, e in self.level_sources:
            if p < 0:
                names.append(self.pooled_from)
            else:
                multi = sum(q == p for q, _ in self.level_sources) > 1 or \
                    self._select[p] is not None or e > 0
                name = self.points[p][0]
                names.append(f'{name}[{e}]' if multi else name)
        return names

    def _maps(self, index: int, out) -> List[torch.Tensor]:
        """The maps of point ``index`` from its recorded output."""
        name = self.points[index][0]
        grid = returned_grid(out)
        if grid is not None:
            return [tokens_to_map(out[0], grid)]
        if torch.is_tensor(out) and out.dim() == 3 and name in self.grids:
            source = self.grids[name]
            grid = returned_grid(self._outputs[self._names.index(source)])
            if grid is None:
                raise ConfigError(f'FeatureTap: {source} returned no (tokens, '
                                  f'(h, w)) grid for the tokens of {name}.')
            return [tokens_to_map(out, grid)]
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        bad = [o for o in outs if not (torch.is_tensor(o) and o.dim() == 4)]
        if bad:
            raise ConfigError(
                f'FeatureTap: {name} returned {_describe(bad[0])}, not an '
                f'N x C x H x W map, (tokens, (h, w)) or tokens with a known '
                f'grid; choose another module in points.')
        return outs

    def pop(self) -> List[torch.Tensor]:
        """Return the recorded levels (shallow to deep) and forget them."""
        if any(o is None for o in self._outputs):
            missed = [
                n for n, o in zip(self._names, self._outputs) if o is None
            ]
            raise ConfigError(
                f'FeatureTap: module(s) {missed} did not run in the forward '
                f'pass; the feature points do not match the model.')
        feats: List[torch.Tensor] = []
        sources: List[Tuple[int, int]] = []
        for i, (_, relu) in enumerate(self.points):
            maps = self._maps(i, self._outputs[i])
            keep = self._select[i]
            keep = range(len(maps)) if keep is None else keep
            feats.extend(F.relu(maps[e]) if relu else maps[e] for e in keep)
            sources.extend((i, e) for e in keep)
        if self.pooled_from is not None:
            pooled = _last_tensor(self._outputs[len(self.points)])
            if pooled.dim() not in (2, 4) or pooled.shape[2:].numel() != 1:
                raise ConfigError(
                    f'FeatureTap: the pooled level {self.pooled_from} '
                    f'returned {_describe(pooled)}, not a pooled (N, C) '
                    f'embedding; set pooled to a pooling module, or None.')
            feats.append(pooled.reshape(pooled.shape[0], -1, 1, 1))
            sources.append((-1, 0))
        self.level_sources = sources
        self._outputs = [None] * len(self._outputs)
        return feats

    def subset(self, levels: Sequence[int]) -> 'FeatureTap':
        """A tap of the levels ``levels`` (indices into the last
        :meth:`pop`) only; this tap's hooks are removed.

        Args:
            levels (Sequence[int]): Levels to keep, shallow to deep.

        Returns:
            FeatureTap: Hooks only on the modules those levels come from.
        """
        kept = [self.level_sources[i] for i in levels]
        points, select = [], []
        for i, (name, relu) in enumerate(self.points):
            elements = [e for p, e in kept if p == i]
            if not elements:
                continue
            points.append((name, relu, self.grids.get(name)))
            total = sum(p == i for p, _ in self.level_sources)
            select.append(
                elements if len(elements) < total or self._select[i] else None)
        self.remove()
        pooled = self.pooled_from if (-1, 0) in kept else None
        return FeatureTap(self._model, points, pooled, select)

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
