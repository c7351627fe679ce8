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
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.checkpoint_check import (key_mismatch, read_checkpoint,
                                               state_of)
from mmreviewkd.utils.config_check import load_config
from mmreviewkd.utils.errors import CheckpointError, ConfigError

from .feature_tap import FeatureTap, build_feature_tap
from .level_pairing import Level, LevelPairing
from .stage_discovery import dummy_forward_error
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
        raise ConfigError(f'ReviewKDDistiller: {who} must be a model dict '
                          f'with a `type` or a config path, got {cfg!r}.')
    try:
        return MODELS.build(cfg)
    except KeyError as e:
        if 'registry' not in str(e):
            raise
        raise KeyError(
            f'ReviewKDDistiller: cannot build the {who}: {e.args[0]} '
            f'(name the scope: type="mmpretrain.ImageClassifier" / '
            f'"mmdet.FasterRCNN", or add _scope_="mmpretrain").') from None


def load_teacher_checkpoint(teacher: nn.Module, filename: str) -> None:
    """Load ``filename`` into ``teacher`` strictly, or fail with one line.

    Accepts plain state dicts, MMEngine checkpoints (``state_dict`` key),
    DDP ``module.`` prefixes, and ReviewKD distiller checkpoints, whose
    ``student.`` part (a distilled student) is used. The file is read
    without running pickled code (see :func:`read_checkpoint`).
    """
    state = state_of(read_checkpoint(filename, 'teacher_ckpt'))
    if any(k.startswith('student.') for k in state):
        state = {
            k[len('student.'):]: v
            for k, v in state.items() if k.startswith('student.')
        }
    problem = key_mismatch(teacher.state_dict(), state)
    if problem is not None:
        raise CheckpointError(
            f'ReviewKDDistiller: teacher_ckpt {filename!r} does not match the '
            f'teacher model ({problem}); check that the checkpoint and the '
            f'teacher config are the same architecture.')
    teacher.load_state_dict(state, strict=True)
    print_log(f'Loaded teacher weights from {filename}', logger='current')


@MODELS.register_module()
class ReviewKDDistiller(BaseModel):
    """Knowledge review distillation (ReviewKD, CVPR 2021).

    Hooks written for the student work on the distiller: an attribute the
    distiller does not have (``bbox_head``, ``head``, ``backbone``, ...) is
    looked up on the student, so e.g. mmdet's ``YOLOXModeSwitchHook``
    (``model.bbox_head.use_l1 = True``) switches the student. Names starting
    with ``_`` are never forwarded, and the distiller's own attributes
    (``student``, ``teacher``, ``connector``, ``data_preprocessor``, ...)
    win.

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
        warmup_epochs (float): Linear warm-up of the feature loss over
            epochs, factor ``min(1, epoch / warmup_epochs)`` with 0-based
            epochs (epoch 0 has no feature loss); fractions are used as
            given. 0 disables warm-up.
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
                 warmup_epochs: float = 0,
                 student_feats: dict = dict(preact=False),
                 teacher_feats: dict = dict(preact=False),
                 infer_input_shape: Sequence[int] = (3, 32, 32),
                 data_preprocessor: Optional[dict] = None,
                 teacher_input: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        for name, value in (('loss_weight', loss_weight),
                            ('warmup_epochs', warmup_epochs)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not value >= 0:
                raise ConfigError(
                    f'ReviewKDDistiller: {name} must be >= 0, got {value!r} '
                    f'(a number: write it without quotes, e.g. {name}=1.0).')
        if teacher_input not in ('auto', 'student'):
            raise ConfigError(f'ReviewKDDistiller: teacher_input must be '
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
        self.warmup_epochs = float(warmup_epochs)
        self.infer_input_shape = tuple(infer_input_shape)
        self.student_tap = self._build_tap(self.student, student_feats,
                                           'student')
        self.teacher_tap = self._build_tap(self.teacher, teacher_feats,
                                           'teacher')
        s_shapes, t_shapes = self.infer_feature_shapes(infer_input_shape)
        self.connector = self._build_own(
            self._connector_cfg(connector, s_shapes, t_shapes),
            'ABFConnector')
        self.distill_loss = self._build_own(distill_loss, 'HCLLoss')
        # a loss whose forward takes `per_level` returns one value per level,
        # logged as loss_hcl.<i>
        self._loss_kwargs = dict(per_level=True) if 'per_level' in \
            inspect.signature(self.distill_loss.forward).parameters else {}

    # ------------------------------------------------------------------ build
    @staticmethod
    def _build_own(cfg: dict, default_type: str) -> nn.Module:
        """Build a connector/loss; bare type names mean mmreviewkd's, and a
        dict without ``type`` (e.g. only ``--cfg-options
        model.connector.norm_cfg.type=SyncBN``) is the default type."""
        cfg = copy.deepcopy(dict(cfg))
        cfg.setdefault('type', default_type)
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

    def _build_tap(self, model: nn.Module, feats_cfg: dict,
                   who: str) -> FeatureTap:
        """The tap of ``student_feats`` / ``teacher_feats`` (see
        :func:`build_feature_tap`); stages of backbones we know nothing
        about are discovered with a dummy forward of
        ``infer_input_shape``."""
        return build_feature_tap(model, feats_cfg, who,
                                 self.infer_input_shape)

    @torch.no_grad()
    def infer_feature_shapes(
        self, input_shape: Sequence[int]
    ) -> Tuple[List[torch.Size], List[torch.Size]]:
        """Run both models once on zeros (eval mode) to read feature shapes.

        When the two give different numbers of levels, the levels are paired
        by stride (:class:`LevelPairing`), the taps keep only the paired
        levels (dropped ones are not read during training) and one line
        says what was paired and dropped. The pairing found at build time
        is kept as ``level_pairing`` (see :meth:`describe_levels`).

        Returns:
            tuple[list[torch.Size], list[torch.Size]]: Shapes of the paired
            student and teacher levels, shallow to deep.
        """
        dummy = torch.zeros(1, *input_shape)
        levels, shapes = [], []
        for who, model, tap in (('student', self.student, self.student_tap),
                                ('teacher', self.teacher, self.teacher_tap)):
            was_training = model.training
            model.eval()
            try:
                model.extract_feat(dummy)
            except Exception as e:
                tap.clear()
                raise dummy_forward_error(who, dummy.shape, e) from None
            finally:
                model.train(was_training)
            feats = tap.pop()
            shapes.append([f.shape for f in feats])
            levels.append(self._levels(tap, feats))
        pairing = LevelPairing.pair(*levels, tuple(input_shape[-2:]))
        if any(pairing.dropped):
            self.student_tap = self.student_tap.subset(pairing.student_keep)
            self.teacher_tap = self.teacher_tap.subset(pairing.teacher_keep)
            print_log(pairing.summary(), logger='current')
        if self.__dict__.get('level_pairing') is None:
            self.level_pairing = pairing
        return ([shapes[0][i] for i in pairing.student_keep],
                [shapes[1][i] for i in pairing.teacher_keep])

    @staticmethod
    def _levels(tap: FeatureTap, feats: List[torch.Tensor]) -> List[Level]:
        """Name, channels and size of each level of the last ``pop``."""
        return [
            Level(name, f.shape[1], tuple(f.shape[-2:]), source[0] < 0)
            for name, f, source in zip(tap.level_names, feats,
                                       tap.level_sources)
        ]

    def describe_levels(self) -> str:
        """A table of the distilled levels at ``infer_input_shape``: per
        level the student and teacher modules, channels, stride and size,
        the connector part (ABF index, whether it fuses, mid channels), and
        the levels dropped by the stride pairing."""
        if self.__dict__.get('level_pairing') is None:
            self.infer_feature_shapes(self.infer_input_shape)
        h, w = self.level_pairing.input_size
        return (f'levels at input {h}x{w} (stride = input / map size), '
                f'shallow to deep:\n'
                f'{self.level_pairing.table(self.connector)}')

    def _connector_cfg(self, cfg: dict, s_shapes, t_shapes) -> dict:
        cfg = copy.deepcopy(dict(cfg))
        if len(s_shapes) != len(t_shapes):
            raise ConfigError(
                f'ReviewKDDistiller: the student gives {len(s_shapes)} feature'
                f' levels but the teacher {len(t_shapes)}; they must pair up '
                f'(set student_feats/teacher_feats points, or pooled=None).')
        inferred = dict(
            in_channels=[s[1] for s in s_shapes],
            out_channels=[t[1] for t in t_shapes])
        for key, value in inferred.items():
            given = cfg.get(key)
            if given is not None and [int(c) for c in given] != value:
                side = 'student' if key == 'in_channels' else 'teacher'
                raise ConfigError(
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
        """The student's task losses (keys prefixed ``student.``) plus
        ``loss_hcl``; also logs ``loss_hcl.<level>`` (shallow to deep, part
        of ``loss_hcl``, not added again) and ``distill_weight`` (lambda
        times the warm-up factor)."""
        self.student_tap.clear()
        student_losses = self.student.loss(inputs, data_samples)
        losses = {f'student.{k}': v for k, v in student_losses.items()}
        student_feats = self.student_tap.pop()
        weight = self.distill_factor()
        if self.training and inputs.shape[0] == 1 and any(
                f.shape[-2:].numel() == 1 for f in student_feats):
            # BatchNorm in training mode needs more than one value per
            # channel: a batch of one sample at a 1x1 (pooled) level has one
            if weight > 0:
                print_log(
                    'ReviewKDDistiller: a batch of one sample cannot be '
                    'batch-normalised at the 1x1 level; this batch trains '
                    'the student without loss_hcl (train_dataloader '
                    'drop_last=True avoids such batches).',
                    logger='current',
                    level=logging.WARNING)
            weight = 0.0
            # zero, with every connector parameter in the graph (DDP)
            losses['loss_hcl'] = sum(
                p.sum() for p in self.connector.parameters()) * 0.0
            self._log_zero_levels(losses, len(student_feats))
        elif weight > 0:
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
            loss = self.distill_loss(outs, teacher_feats,
                                     **self._loss_kwargs)
            if isinstance(loss, (list, tuple)):  # per level
                for i, level in enumerate(loss):
                    losses[f'loss_hcl.{i}'] = (level * weight).detach()
                loss = sum(loss)
            losses['loss_hcl'] = loss * weight
        else:
            # Keep the connector in the graph (zero gradient) so DDP without
            # find_unused_parameters works during the warm-up epoch.
            outs = self.connector(student_feats)
            losses['loss_hcl'] = sum(o.sum() for o in outs) * 0.0
            self._log_zero_levels(losses, len(outs))
        losses['distill_weight'] = torch.tensor(weight, device=inputs.device)
        return losses

    def _log_zero_levels(self, losses: dict, num_levels: int) -> None:
        """Per-level keys are logged on every iteration, zeros included, so
        that their running means cover the same iterations as
        ``loss_hcl``'s."""
        if self._loss_kwargs:
            zero = losses['loss_hcl'].detach()
            for i in range(num_levels):
                losses[f'loss_hcl.{i}'] = zero

    def parse_losses(
        self, losses: Dict[str, torch.Tensor]
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """MMEngine's sum of every ``*loss*`` term, except the per-level
        breakdowns ``<name>.<level>`` of a term that is itself in
        ``losses``: they are logged only, so the logged ``loss`` is exactly
        the optimised total."""
        parts = {
            k: v
            for k, v in losses.items() if '.' in k and
            k.rsplit('.', 1)[1].isdigit() and k.rsplit('.', 1)[0] in losses
        }
        loss, log_vars = super().parse_losses(
            {k: v
             for k, v in losses.items() if k not in parts})
        for key, value in parts.items():
            log_vars[key] = value.detach()
        return loss, log_vars

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

    def __getattr__(self, name: str):
        """Attributes nn.Module does not resolve come from the student.

        Student hooks (mode / pipeline switches, margin or recipe switches)
        then work on the distiller unchanged. Private names (leading ``_``)
        are never forwarded, nor is anything while the student is not built
        yet.
        """
        try:
            return super().__getattr__(name)
        except AttributeError as error:
            student = self.__dict__.get('_modules', {}).get('student')
            if name.startswith('_') or student is None:
                raise
            try:
                return getattr(student, name)
            except AttributeError:
                raise AttributeError(
                    f"'{type(self).__name__}' object and its student "
                    f"'{type(student).__name__}' have no attribute "
                    f"'{name}'") from error
