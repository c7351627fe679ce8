# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Extra distillation terms of the ReviewKD distiller (KD, DKD, FitNet, ...).

A term is ``loss(connector(student input), teacher input)`` times its own
weight and warm-up, logged as ``loss_<name>``. Inputs are named:

========================  ===============================================
``'logits'``              classification scores (N, K)
``'pooled'``              the pooled embedding (N, C), the deepest level
``'feats'``               every distilled level, shallow to deep (a list)
``'stages'``              the levels except the pooled one (a list)
``'feats.<i>'``           one level (N, C, H, W); ``i`` may be negative
``'stages.<i>'``          one stage
``'abf'`` / ``'abf.<i>'``  the ReviewKD connector's outputs (student only)
========================  ===============================================
"""
import copy
import inspect
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

_NAME = re.compile(r'^(logits|pooled|feats|stages|abf)(?:\.(-?\d+))?$')
_TERM_KEYS = {'loss', 'connector', 'inputs', 'loss_weight', 'warmup_epochs'}


def build_own(cfg: dict, default_type: Optional[str] = None) -> nn.Module:
    """Build a connector/loss; bare type names mean mmreviewkd's, and a
    dict without ``type`` (e.g. only ``--cfg-options
    model.connector.norm_cfg.type=SyncBN``) is ``default_type``."""
    cfg = copy.deepcopy(dict(cfg))
    if default_type is not None:
        cfg.setdefault('type', default_type)
    cfg.setdefault('_scope_', 'mmreviewkd')
    return MODELS.build(cfg)


def check_weight(value, name: str, who: str = 'ReviewKDDistiller') -> float:
    """``value`` as a float >= 0, or one line saying how to write it."""
    if isinstance(value, bool) or not isinstance(
            value, (int, float)) or not value >= 0:
        raise ConfigError(
            f'{who}: {name} must be >= 0, got {value!r} (a number: write it '
            f'without quotes, e.g. {name}=1.0).')
    return float(value)


def warmup_factor(warmup_epochs: float) -> float:
    """``min(1, epoch / warmup_epochs)`` with 0-based epochs; 1 without
    warm-up."""
    if warmup_epochs <= 0:
        return 1.0
    epoch = MessageHub.get_current_instance().get_info('epoch', 0)
    return min(1.0, epoch / warmup_epochs)


def select_levels(name: str, levels: Sequence, pooled: Sequence[bool]):
    """The item(s) of ``levels`` (one per distilled level, shallow to deep)
    that the input ``name`` (``feats``, ``stages.1``, ``pooled`` ...)
    reads; None for ``logits`` / ``abf``."""
    kind, index = _NAME.match(name).groups()
    if kind == 'pooled':
        return levels[list(pooled).index(True)] if any(pooled) else None
    if kind not in ('feats', 'stages'):
        return None
    if kind == 'stages':
        levels = [v for v, p in zip(levels, pooled) if not p]
    return list(levels) if index is None else _item(levels, index)


def _item(values: Sequence, index: str):
    """``values[index]``, None when out of range."""
    i = int(index)
    return values[i] if -len(values) <= i < len(values) else None


class FeatureInputs:
    """Everything a term may read, for one side of one batch.

    Args:
        feats (list[Tensor]): The distilled levels, shallow to deep.
        pooled (Sequence[bool]): Per level, whether it is the pooled one.
        logits (Tensor, optional): Classification scores.
        abf (list[Tensor], optional): Connector outputs (student only).
    """

    def __init__(self,
                 feats: List[torch.Tensor],
                 pooled: Sequence[bool],
                 logits: Optional[torch.Tensor] = None,
                 abf: Optional[List[torch.Tensor]] = None) -> None:
        self.feats, self.pooled = feats, list(pooled)
        self.logits, self.abf = logits, abf

    def get(self, name: str
            ) -> Optional[Union[torch.Tensor, List[torch.Tensor]]]:
        """The input ``name``; None if this side does not have it."""
        kind, index = _NAME.match(name).groups()
        if kind == 'logits':
            return self.logits
        if kind == 'abf':
            if self.abf is None or index is None:
                return self.abf
            return _item(self.abf, index)
        value = select_levels(name, self.feats, self.pooled)
        return value.flatten(1) if kind == 'pooled' and \
            value is not None else value


class DistillTerm(nn.Module):
    """One extra distillation term.

    Args:
        name (str): The term's name; logged as ``loss_<name>``.
        loss (dict): The registered loss, called as ``loss(student,
            teacher)`` (plus ``data_samples=`` when its ``forward`` takes
            them: labels, sample indices).
        inputs (str | Sequence[str]): The student and teacher inputs (one
            name: the same on both sides), see the module docstring.
        connector (dict, optional): Applied to the student input first.
        loss_weight (float): The term's weight. Defaults to 1.0.
        warmup_epochs (float): Linear warm-up over epochs, as the
            distiller's. Defaults to 0 (none).
    """

    def __init__(self,
                 name: str,
                 loss: dict,
                 inputs: Union[str, Sequence[str]],
                 connector: Optional[dict] = None,
                 loss_weight: float = 1.0,
                 warmup_epochs: float = 0) -> None:
        super().__init__()
        self.name = name
        self.inputs = self.parse_inputs(name, inputs)
        self.loss_weight = check_weight(loss_weight, f'{name}.loss_weight')
        self.warmup_epochs = check_weight(warmup_epochs,
                                          f'{name}.warmup_epochs')
        self._loss_cfg, self._connector_cfg = loss, connector
        self.connector: Optional[nn.Module] = None
        self.loss: Optional[nn.Module] = None

    @staticmethod
    def parse_inputs(name: str, inputs) -> Tuple[str, str]:
        pair = (inputs, inputs) if isinstance(inputs, str) else tuple(inputs)
        if len(pair) != 2 or not all(
                isinstance(p, str) and _NAME.match(p) for p in pair):
            raise ConfigError(
                f'ReviewKDDistiller: distill_terms.{name}.inputs must be a '
                f'name or a (student, teacher) pair of names among logits, '
                f'pooled, feats, stages, feats.<i>, stages.<i>, abf '
                f'(student side), got {inputs!r}.')
        if pair[1].startswith('abf'):
            raise ConfigError(
                f'ReviewKDDistiller: distill_terms.{name}: "abf" is the '
                f'student\'s connector output; compare it with teacher '
                f'"feats", e.g. inputs=("abf", "feats").')
        return pair

    def uses(self, kind: str) -> Tuple[bool, bool]:
        """Whether the student / teacher input is of ``kind``."""
        return tuple(p.split('.')[0] == kind for p in self.inputs)

    def build(self, student: FeatureInputs, teacher: FeatureInputs) -> None:
        """Build connector and loss; their ``in_channels`` /
        ``out_channels`` (and ``in_size`` / ``out_size`` for one map per
        side), when they take them and the config does not set them, come
        from the dummy inputs ``student`` / ``teacher``."""

        def channels(value):
            if isinstance(value, (list, tuple)):
                return [v.shape[1] for v in value]
            return value.shape[1]

        s, t = student.get(self.inputs[0]), teacher.get(self.inputs[1])
        given = dict(in_channels=channels(s), out_channels=channels(t))
        if torch.is_tensor(s) and s.dim() == 4 and t.dim() == 4:
            # one map on each side: a connector may need both sizes
            given.update(
                in_size=tuple(s.shape[-2:]), out_size=tuple(t.shape[-2:]))
        if self._connector_cfg is not None:
            self.connector = build_own(self._with(self._connector_cfg,
                                                  given))
        self.loss = build_own(self._with(self._loss_cfg, given))
        self._pass_samples = 'data_samples' in inspect.signature(
            self.loss.forward).parameters

    @staticmethod
    def _with(cfg: dict, channels: dict) -> dict:
        """``cfg`` with the shapes its class takes and does not set."""
        cfg = copy.deepcopy(dict(cfg))
        cls = MODELS.get(cfg['type']) if isinstance(cfg.get('type'), str) \
            else cfg.get('type')
        if cls is None:
            with_scope = dict(cfg, _scope_='mmreviewkd')
            build_own(with_scope)  # raises the registry's KeyError
        params = inspect.signature(cls.__init__).parameters
        for key, value in channels.items():
            if key in params and cfg.get(key) is None:
                cfg[key] = value
        return cfg

    def init_from_teacher(self, teacher: nn.Module,
                          points: List[str]) -> None:
        """Let connector / loss read what they need from the teacher
        (OFD's margins from its BN statistics)."""
        for part in (self.connector, self.loss):
            if hasattr(part, 'init_from_teacher'):
                part.init_from_teacher(teacher, points)

    def factor(self) -> float:
        """This epoch's weight: ``loss_weight`` times the warm-up."""
        return self.loss_weight * warmup_factor(self.warmup_epochs)

    def forward(self, student: FeatureInputs, teacher: FeatureInputs,
                data_samples: Optional[list]) -> torch.Tensor:
        """The unweighted term."""
        s = student.get(self.inputs[0])
        t = teacher.get(self.inputs[1])
        if self.connector is not None:
            s = self.connector(s)
        kwargs = dict(data_samples=data_samples) if self._pass_samples else {}
        return self.loss(s, t, **kwargs)

    def zero(self, student: FeatureInputs) -> torch.Tensor:
        """A zero loss with the term's parameters in the graph (for DDP
        without ``find_unused_parameters`` while the term is off)."""
        value = student.get(self.inputs[0])
        if value is None:  # abf outputs not computed in this step
            value = student.feats
        zero = sum(v.sum() for v in value) if isinstance(value, list) \
            else value.sum()
        zero = zero * 0.0
        for p in self.parameters():
            if p.requires_grad:
                zero = zero + p.sum() * 0.0
        return zero


def build_terms(cfg: Optional[Dict[str, dict]]) -> Dict[str, DistillTerm]:
    """``distill_terms`` of the config as (unbuilt) :class:`DistillTerm`;
    a term set to None is left out."""
    if cfg is not None and not isinstance(cfg, dict):
        raise ConfigError(
            f'ReviewKDDistiller: distill_terms must be a dict of named terms, '
            f'e.g. dict(kd=dict(loss=dict(type="KDLoss"), inputs="logits")), '
            f'got {type(cfg).__name__}.')
    terms = {}
    for name, term in (cfg or {}).items():
        if term is None:  # removed: --cfg-options model.distill_terms.kd=None
            continue
        if not isinstance(term, dict) or 'loss' not in term:
            raise ConfigError(
                f'ReviewKDDistiller: distill_terms.{name} must be a dict with '
                f'a `loss` (and inputs, optional connector, loss_weight, '
                f'warmup_epochs), got {term!r}.')
        unknown = set(term) - _TERM_KEYS
        if unknown:
            raise ConfigError(
                f'ReviewKDDistiller: unknown keys {sorted(unknown)} in '
                f'distill_terms.{name}; use {sorted(_TERM_KEYS)}.')
        if not re.match(r'^[A-Za-z]\w*$', str(name)) or name == 'hcl':
            raise ConfigError(
                f'ReviewKDDistiller: distill term name {name!r} must be an '
                f'identifier other than "hcl" (it is logged as loss_<name>).')
        terms[name] = DistillTerm(name, **{'inputs': 'logits', **term})
    return terms
