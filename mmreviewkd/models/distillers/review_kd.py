# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ReviewKD distiller: student + frozen teacher + ABF chain + HCL.

One training step::

    student.loss(inputs)            -> task losses, student features (hooks)
    teacher.extract_feat(inputs)    -> teacher features (no_grad, eval mode)
    connector(student features)     -> outputs shaped like the teacher's
    loss(outputs, teacher features) * loss_weight * warm-up  -> loss_hcl

``predict`` / ``tensor`` modes and validation use the student alone.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import _load_checkpoint
from mmengine.structures import BaseDataElement

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.config_check import load_config
from .feature_tap import FeatureTap, resolve_feature_points
from .teacher_input import TeacherRenormalizer

ModelCfg = Union[dict, str, ConfigDict]


def build_model_from_ref(cfg: ModelCfg, who: str) -> nn.Module:
    """Build a student/teacher model from an inline dict or a config path.

    Accepted forms: an inline model dict (``dict(type='ImageClassifier',
    ...)``, built in the current default scope unless it has ``_scope_``); a
    config path such as ``'mmpretrain::resnet/resnet18_8xb32_in1k.py'``,
    ``'mmdet::faster_rcnn/...py'`` or a local file, whose ``model`` is built
    in that config's ``default_scope``; or ``dict(cfg_path=<path>, **kw)``
    where ``kw`` is merged into that config's ``model`` the way ``_base_``
    inheritance merges (nested dicts key by key, ``_delete_=True`` to
    replace), e.g. ``dict(cfg_path=..., test_cfg=dict(rcnn=dict(
    score_thr=0.)))`` or ``--cfg-options model.teacher.backbone.init_cfg=
    None``.
    """
    overrides: dict = {}
    if isinstance(cfg, (dict, ConfigDict)) and 'cfg_path' in cfg:
        overrides = {k: v for k, v in cfg.items() if k != 'cfg_path'}
        cfg = cfg['cfg_path']
    if isinstance(cfg, str):
        try:
            full = load_config(cfg)
        except FileNotFoundError as e:
            raise FileNotFoundError(f'ReviewKDDistiller: {who}: {e}') from None
        model_cfg = copy.deepcopy(full.model)
        model_cfg.merge(copy.deepcopy(overrides))
        if full.get('data_preprocessor') is not None:
            model_cfg.setdefault('data_preprocessor',
                                 copy.deepcopy(full.data_preprocessor))
        if full.get('default_scope') is not None:
            model_cfg.setdefault('_scope_', full.default_scope)
        cfg = model_cfg
    if not isinstance(cfg, (dict, ConfigDict)) or 'type' not in cfg:
        raise TypeError(f'ReviewKDDistiller: {who} must be a model dict with '
                        f'a `type` or a config path, got {cfg!r}.')
    try:
        return MODELS.build(cfg)
    except KeyError as e:
        if 'registry' not in str(e):
            raise
        raise KeyError(
            f'ReviewKDDistiller: cannot build the {who}: {e.args[0]} '
            f'(name the scope: type="mmpretrain.ImageClassifier" / '
            f'"mmdet.FasterRCNN", or add _scope_="mmpretrain").') from None


def _strip_prefix(state: dict, prefixes: Sequence[str]) -> dict:
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_teacher_checkpoint(teacher: nn.Module, filename: str) -> None:
    """Load ``filename`` into ``teacher`` strictly, or fail with one line.

    Accepts plain state dicts, MMEngine checkpoints (``state_dict`` key),
    DDP ``module.`` prefixes, and ReviewKD distiller checkpoints, whose
    ``student.`` part (a distilled student) is used.
    """
    if '://' not in filename and not osp.isfile(filename):
        raise FileNotFoundError(
            f'ReviewKDDistiller: teacher_ckpt {filename!r} does not exist; '
            f'put the teacher checkpoint there (see README "Data and '
            f'checkpoints") or fix teacher_ckpt in the config.')
    try:
        ckpt = _load_checkpoint(filename, map_location='cpu')
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(
            f'ReviewKDDistiller: cannot read teacher_ckpt {filename!r} '
            f'({type(e).__name__}: {str(e).splitlines()[0][:200]}); the '
            f'file is truncated or not a PyTorch checkpoint.') from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise RuntimeError(f'ReviewKDDistiller: teacher_ckpt {filename!r} '
                           f'holds no state dict.')
    state = _strip_prefix(dict(state), ('module.', ))
    if any(k.startswith('student.') for k in state):
        state = {
            k[len('student.'):]: v
            for k, v in state.items() if k.startswith('student.')
        }
    own = teacher.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(
        k for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:

        def few(keys):
            return ', '.join(keys[:4]) + (
                f' (+{len(keys) - 4} more)' if len(keys) > 4 else '')

        parts = []
        if missing:
            parts.append(f'{len(missing)} missing keys: {few(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys: '
                         f'{few(unexpected)}')
        if wrong_shape:
            parts.append(f'{len(wrong_shape)} keys with other shapes: '
                         f'{few(wrong_shape)}')
        raise RuntimeError(
            f'ReviewKDDistiller: teacher_ckpt {filename!r} does not match the '
            f'teacher model ({"; ".join(parts)}); check that the checkpoint '
            f'and the teacher config are the same architecture.')
    teacher.load_state_dict(state, strict=True)
    print_log(f'Loaded teacher weights from {filename}', logger='current')


@MODELS.register_module()
class ReviewKDDistiller(BaseModel):
    """Knowledge review distillation (ReviewKD, CVPR 2021).

    Args:
        student (dict | str): The student model: an inline model dict or a
            config reference (see :func:`build_model_from_ref`).
        teacher (dict | str): The teacher model, same forms.
        teacher_ckpt (str, optional): Teacher weights, loaded strictly. None
            only makes sense in tests or when the teacher config has its own
            ``init_cfg`` pretrained weights.
        connector (dict): The connector mapping student levels to teacher
            levels. ``in_channels``/``out_channels`` are inferred from a dummy
            forward; explicit values are checked against the models.
            Defaults to ``dict(type='ABFConnector')``.
        distill_loss (dict): The feature loss. Defaults to
            ``dict(type='HCLLoss')``.
        loss_weight (float): lambda, the weight of the feature loss.
        warmup_epochs (int): Linear warm-up of the feature loss over epochs,
            factor ``min(1, epoch / warmup_epochs)`` with 0-based epochs
            (epoch 0 has no feature loss). 0 disables warm-up.
        student_feats (dict): How to read student features: ``preact``
            (bool), ``points`` (list of module names or ``(name, relu)``
            pairs, default inferred), ``pooled`` (module name of the pooled
            embedding, default ``'neck'`` for classifiers, None for none).
            Defaults to post-activation features (original recipe).
        teacher_feats (dict): Same for the teacher. The original CIFAR
            recipe reads pre-activation teacher features
            (``dict(preact=True)``), set by our CIFAR configs.
        infer_input_shape (Sequence[int]): (C, H, W) of the dummy input used
            to infer channels at build time. Defaults to (3, 32, 32).
        data_preprocessor (dict, optional): Passed to the student (the
            distiller uses the student's preprocessor).
        teacher_input (str): What the teacher sees. ``'auto'`` (default):
            the student's preprocessed batch (same resize, augmentation and
            padding), re-normalised with the teacher's own mean / std /
            BGR-RGB order when the teacher's data preprocessor normalises
            differently from the student's (see
            :class:`TeacherRenormalizer`); ``teacher_predict`` then uses the
            teacher's own preprocessor. A teacher whose preprocessor does
            not normalise (an inline dict without one) shares the student's
            batch. ``'student'``: always the student's batch as is.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 student: ModelCfg,
                 teacher: ModelCfg,
                 teacher_ckpt: Optional[str] = None,
                 connector: dict = dict(type='ABFConnector'),
                 distill_loss: dict = dict(type='HCLLoss'),
                 loss_weight: float = 1.0,
                 warmup_epochs: int = 0,
                 student_feats: dict = dict(preact=False),
                 teacher_feats: dict = dict(preact=False),
                 infer_input_shape: Sequence[int] = (3, 32, 32),
                 data_preprocessor: Optional[dict] = None,
                 teacher_input: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        if loss_weight < 0:
            raise ValueError(f'ReviewKDDistiller: loss_weight must be >= 0, '
                             f'got {loss_weight}.')
        if warmup_epochs < 0:
            raise ValueError(f'ReviewKDDistiller: warmup_epochs must be >= 0,'
                             f' got {warmup_epochs}.')
        if teacher_input not in ('auto', 'student'):
            raise ValueError(f'ReviewKDDistiller: teacher_input must be '
                             f'"auto" or "student", got {teacher_input!r}.')
        student_model = build_model_from_ref(
            self._with_preprocessor(student, data_preprocessor), 'student')
        super().__init__(
            data_preprocessor=student_model.data_preprocessor,
            init_cfg=init_cfg)
        self.student = student_model
        self.teacher = build_model_from_ref(teacher, 'teacher')
        self.teacher_ckpt = teacher_ckpt
        if teacher_ckpt is not None:
            load_teacher_checkpoint(self.teacher, teacher_ckpt)
            # The runner's init_weights() must not overwrite loaded weights.
            self.teacher._is_init = True
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        # None unless the teacher normalises differently from the student
        self.teacher_renorm = None
        if teacher_input == 'auto':
            self.teacher_renorm = TeacherRenormalizer.between(
                self.data_preprocessor,
                getattr(self.teacher, 'data_preprocessor', None))

        self.loss_weight = float(loss_weight)
        self.warmup_epochs = int(warmup_epochs)
        self.infer_input_shape = tuple(infer_input_shape)
        self.student_tap = self._build_tap(self.student, student_feats,
                                           'student')
        self.teacher_tap = self._build_tap(self.teacher, teacher_feats,
                                           'teacher')
        s_shapes, t_shapes = self.infer_feature_shapes(infer_input_shape)
        self.connector = self._build_own(
            self._connector_cfg(connector, s_shapes, t_shapes))
        self.distill_loss = self._build_own(distill_loss)

    # ------------------------------------------------------------------ build
    @staticmethod
    def _build_own(cfg: dict) -> nn.Module:
        """Build a connector/loss; bare type names mean mmreviewkd's."""
        cfg = copy.deepcopy(dict(cfg))
        cfg.setdefault('_scope_', 'mmreviewkd')
        return MODELS.build(cfg)

    @staticmethod
    def _with_preprocessor(cfg: ModelCfg,
                           data_preprocessor: Optional[dict]) -> ModelCfg:
        if data_preprocessor is None or not isinstance(cfg, (dict,
                                                             ConfigDict)):
            return cfg
        cfg = copy.deepcopy(cfg)
        if 'cfg_path' in cfg or 'data_preprocessor' in cfg:
            cfg.setdefault('data_preprocessor', data_preprocessor)
            return cfg
        cfg['data_preprocessor'] = data_preprocessor
        return cfg

    @staticmethod
    def _build_tap(model: nn.Module, feats_cfg: dict, who: str) -> FeatureTap:
        feats_cfg = dict(feats_cfg or {})
        unknown = set(feats_cfg) - {'preact', 'points', 'pooled'}
        if unknown:
            raise ValueError(f'ReviewKDDistiller: unknown keys {sorted(unknown)}'
                             f' in {who}_feats; use preact, points, pooled.')
        preact = bool(feats_cfg.get('preact', False))
        points = feats_cfg.get('points')
        if points is None:
            points, pooled = resolve_feature_points(model, preact, who)
        else:
            points = [(p, False) if isinstance(p, str) else tuple(p)
                      for p in points]
            pooled = None
        pooled = feats_cfg.get('pooled', pooled)
        return FeatureTap(model, points, pooled)

    @torch.no_grad()
    def infer_feature_shapes(
        self, input_shape: Sequence[int]
    ) -> Tuple[List[torch.Size], List[torch.Size]]:
        """Run both models once on zeros (eval mode) to read feature shapes."""
        dummy = torch.zeros(1, *input_shape)
        shapes = []
        for who, model, tap in (('student', self.student, self.student_tap),
                                ('teacher', self.teacher, self.teacher_tap)):
            was_training = model.training
            model.eval()
            try:
                model.extract_feat(dummy)
                feats = tap.pop()
            except Exception as e:
                tap.clear()
                raise RuntimeError(
                    f'ReviewKDDistiller: the {who} failed a dummy forward of '
                    f'shape {tuple(dummy.shape)} ({type(e).__name__}: '
                    f'{str(e).splitlines()[0][:200]}); set infer_input_shape '
                    f'to an input size the model accepts.') from None
            finally:
                model.train(was_training)
            shapes.append([f.shape for f in feats])
        return shapes[0], shapes[1]

    def _connector_cfg(self, cfg: dict, s_shapes, t_shapes) -> dict:
        cfg = copy.deepcopy(dict(cfg))
        if len(s_shapes) != len(t_shapes):
            raise ValueError(
                f'ReviewKDDistiller: the student gives {len(s_shapes)} feature'
                f' levels but the teacher {len(t_shapes)}; they must pair up '
                f'(set student_feats/teacher_feats points).')
        inferred = dict(
            in_channels=[s[1] for s in s_shapes],
            out_channels=[t[1] for t in t_shapes])
        for key, value in inferred.items():
            given = cfg.get(key)
            if given is not None and [int(c) for c in given] != value:
                side = 'student' if key == 'in_channels' else 'teacher'
                raise ValueError(
                    f'ReviewKDDistiller: connector {key}={list(given)} '
                    f'contradicts the {side} features {value} (inferred from '
                    f'a dummy forward); fix or remove the override.')
            cfg[key] = value
        return cfg

    # ---------------------------------------------------------------- runtime
    def train(self, mode: bool = True) -> 'ReviewKDDistiller':
        """Set train mode, keeping the teacher in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def distill_factor(self) -> float:
        """``loss_weight * warm-up factor`` for the current epoch."""
        if self.warmup_epochs <= 0:
            return self.loss_weight
        epoch = MessageHub.get_current_instance().get_info('epoch', 0)
        return self.loss_weight * min(1.0, epoch / self.warmup_epochs)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[BaseDataElement]) -> Dict[str, torch.Tensor]:
        """Student task losses plus ``loss_hcl``; also logs
        ``distill_weight`` (lambda times the warm-up factor)."""
        self.student_tap.clear()
        losses = self.student.loss(inputs, data_samples)
        student_feats = self.student_tap.pop()
        weight = self.distill_factor()
        if weight > 0:
            self.teacher_tap.clear()
            with torch.no_grad():
                if self.teacher_renorm is not None:  # teacher's own mean/std
                    self.teacher.extract_feat(
                        self.teacher_renorm(inputs, data_samples))
                else:
                    self.teacher.extract_feat(inputs)
            teacher_feats = self.teacher_tap.pop()
            outs = self.connector(student_feats,
                                  [t.shape[-2:] for t in teacher_feats])
            loss_hcl = self.distill_loss(outs, teacher_feats) * weight
        else:
            # Keep the connector in the graph (zero gradient) so DDP without
            # find_unused_parameters works during the warm-up epoch.
            outs = self.connector(student_feats)
            loss_hcl = sum(o.sum() for o in outs) * 0.0
        losses['loss_hcl'] = loss_hcl
        losses['distill_weight'] = torch.tensor(weight, device=inputs.device)
        return losses

    @torch.no_grad()
    def teacher_predict(self, data: dict) -> list:
        """Teacher predictions for one val batch (used by TeacherEvalHook);
        inputs go through the distiller's (student's) data preprocessor, or
        the teacher's own when it normalises differently."""
        if self.teacher_renorm is not None:
            data = self.teacher.data_preprocessor(data, False)
        else:
            data = self.data_preprocessor(data, False)
        return self.teacher(**data, mode='predict')
