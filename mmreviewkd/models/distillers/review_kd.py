# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ReviewKD distiller: student + frozen teacher + ABF chain + HCL.

One training step::

    student.loss(inputs)            -> task losses, student features (hooks)
    teacher.extract_feat(inputs)    -> teacher features (no_grad, eval mode)
    connector(student features)     -> outputs shaped like the teacher's
    loss(outputs, teacher features) * loss_weight * warm-up  -> loss_hcl
    each of distill_terms           -> loss_<name> (KD, DKD, FitNet, ...)

``predict`` / ``tensor`` modes and validation use the student alone.
"""
import copy
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.checkpoint_check import (key_mismatch, read_checkpoint,
                                               state_of)
from mmreviewkd.utils.config_check import load_config
from mmreviewkd.utils.errors import CheckpointError, ConfigError

from .distill_term import (FeatureInputs, build_own, build_terms, check_weight,
                           select_levels, warmup_factor)
from .feature_tap import FeatureTap, _is_classifier, build_feature_tap
from .grad_probe import grad_norms, last_stage_params
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
        connector (dict, optional): The connector mapping student levels to
            teacher levels. ``in_channels``/``out_channels`` are inferred
            from a dummy forward; explicit values are checked against the
            models. Defaults to ``dict(type='ABFConnector')``. None: no
            ReviewKD term (only ``distill_terms``, e.g. plain KD).
        distill_loss (dict): The feature loss. Defaults to
            ``dict(type='HCLLoss')``.
        loss_weight (float): lambda, the weight of the feature loss.
        warmup_epochs (float): Linear warm-up of the feature loss over
            epochs, factor ``min(1, epoch / warmup_epochs)`` with 0-based
            epochs (epoch 0 has no feature loss); fractions are used as
            given. 0 disables warm-up.
        distill_terms (dict[str, dict], optional): Further distillation
            terms by name, each ``dict(loss=..., inputs=..., connector=...,
            loss_weight=..., warmup_epochs=...)`` (see
            :class:`DistillTerm`), logged as ``loss_<name>``. Teacher logits
            are computed only when an active term reads them.
        task_loss_weight (float): Multiplier of the student's own losses
            (KD recipes use 0.1). Defaults to 1.0.
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
                 connector: Optional[dict] = dict(type='ABFConnector'),
                 distill_loss: dict = dict(type='HCLLoss'),
                 loss_weight: float = 1.0,
                 warmup_epochs: float = 0,
                 distill_terms: Optional[Dict[str, dict]] = None,
                 task_loss_weight: float = 1.0,
                 student_feats: dict = dict(preact=False),
                 teacher_feats: dict = dict(preact=False),
                 infer_input_shape: Sequence[int] = (3, 32, 32),
                 data_preprocessor: Optional[dict] = None,
                 teacher_input: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        self.loss_weight = check_weight(loss_weight, 'loss_weight')
        self.warmup_epochs = check_weight(warmup_epochs, 'warmup_epochs')
        self.task_loss_weight = check_weight(task_loss_weight,
                                             'task_loss_weight')
        terms = build_terms(distill_terms)
        if connector is None and not terms:
            raise ConfigError(
                'ReviewKDDistiller: nothing to distil: connector=None and no '
                'distill_terms; keep the ReviewKD connector or add a term.')
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

        self.infer_input_shape = tuple(infer_input_shape)
        self.student_tap = self._build_tap(self.student, student_feats,
                                           'student')
        self.teacher_tap = self._build_tap(self.teacher, teacher_feats,
                                           'teacher')
        s_shapes, t_shapes = self.infer_feature_shapes(infer_input_shape)
        self.connector, self.distill_loss = None, None
        self._loss_kwargs: dict = {}
        if connector is not None:
            self.connector = build_own(
                self._connector_cfg(connector, s_shapes, t_shapes),
                'ABFConnector')
            self.distill_loss = build_own(distill_loss, 'HCLLoss')
            # a loss whose forward takes `per_level` returns one value per
            # level, logged as loss_hcl.<i>
            if 'per_level' in inspect.signature(
                    self.distill_loss.forward).parameters:
                self._loss_kwargs = dict(per_level=True)
        self.distill_terms = nn.ModuleDict(terms)
        self._student_logits: Optional[torch.Tensor] = None
        self._build_terms(s_shapes, t_shapes)
        off = [f'distill_terms.{n}.loss_weight' for n, t in terms.items()
               if t.loss_weight == 0]
        if connector is not None and self.loss_weight == 0:
            off.insert(0, 'loss_weight')
        if off:
            print_log(
                f'ReviewKDDistiller: {", ".join(off)} = 0: that distillation '
                f'term is off for the whole run (logged as 0).',
                logger='current',
                level=logging.WARNING)
        #: set by DistillGradRatioHook: measure gradients in the next step
        self.grad_probe = False
        self.last_grad_probe: Optional[dict] = None

    # ------------------------------------------------------------------ build
    def _build_terms(self, s_shapes: List[torch.Size],
                     t_shapes: List[torch.Size]) -> None:
        """Build the ``distill_terms`` on zeros shaped like the inputs they
        read, hook the student's head if a term reads its logits, and let
        the terms read the teacher (OFD margins)."""
        if not len(self.distill_terms):
            return
        needs_logits = [
            any(t.uses('logits')[side] for t in self.distill_terms.values())
            for side in (0, 1)
        ]
        for who, model, needed in (('student', self.student, needs_logits[0]),
                                   ('teacher', self.teacher, needs_logits[1])):
            if needed and not _is_classifier(model):
                raise ConfigError(
                    f'ReviewKDDistiller: a distill term reads the {who}\'s '
                    f'logits, but {type(model).__name__} is not a classifier '
                    f'with a `head`; logit terms on detectors (RoI scores) '
                    f'are not supported; use feature inputs.')
        if needs_logits[0]:
            self.student.head.register_forward_hook(self._record_logits)
        s_pooled = [lvl.pooled for lvl in self._paired_levels[0]]
        t_pooled = [lvl.pooled for lvl in self._paired_levels[1]]
        abf = None
        if self.connector is not None:
            abf = [
                torch.zeros(t_shapes[j])
                for j in self._connector_teacher_levels(len(t_shapes))
            ]
        dummy_s = FeatureInputs([torch.zeros(s) for s in s_shapes], s_pooled,
                                self._dummy_logits(self.student), abf)
        dummy_t = FeatureInputs([torch.zeros(t) for t in t_shapes], t_pooled,
                                self._dummy_logits(self.teacher))
        t_names = [lvl.name for lvl in self._paired_levels[1]]
        for name, term in self.distill_terms.items():
            for side, inputs in ((0, dummy_s), (1, dummy_t)):
                if inputs.get(term.inputs[side]) is None:
                    raise ConfigError(
                        f'ReviewKDDistiller: distill_terms.{name} reads '
                        f'"{term.inputs[side]}", which the '
                        f'{("student", "teacher")[side]} does not have '
                        f'(abf needs the ReviewKD connector).')
            term.build(dummy_s, dummy_t)
            points = select_levels(term.inputs[1], t_names, t_pooled)
            term.init_from_teacher(
                self.teacher, [points] if isinstance(points, str) else
                [] if points is None else list(points))

    def _record_logits(self, module, inputs, output) -> None:
        self._student_logits = output[-1] if isinstance(
            output, (list, tuple)) else output

    @staticmethod
    def _dummy_logits(model: nn.Module) -> Optional[torch.Tensor]:
        num_classes = getattr(getattr(model, 'head', None), 'num_classes',
                              None)
        return None if num_classes is None else torch.zeros(1, num_classes)

    def _connector_teacher_levels(self, num_levels: int) -> List[int]:
        """The teacher level each connector output is compared with."""
        return list(
            getattr(self.connector, 'teacher_levels', range(num_levels)))

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
        #: the paired levels (name, channels, size, pooled) of each side
        self._paired_levels = ([levels[0][i] for i in pairing.student_keep],
                               [levels[1][i] for i in pairing.teacher_keep])
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
        the connector part (ABF index, whether it fuses, mid channels), the
        levels dropped by the stride pairing, and one line per extra
        distillation term."""
        if self.__dict__.get('level_pairing') is None:
            self.infer_feature_shapes(self.infer_input_shape)
        h, w = self.level_pairing.input_size
        lines = [
            f'levels at input {h}x{w} (stride = input / map size), shallow '
            f'to deep:', self.level_pairing.table(self.connector)
        ]
        for name, term in self.distill_terms.items():
            parts = [type(p).__name__ for p in (term.connector, term.loss)
                     if p is not None]
            lines.append(
                f'term loss_{name}: student {term.inputs[0]} -> teacher '
                f'{term.inputs[1]}, {" + ".join(parts)}, weight '
                f'{term.loss_weight:g}, warm-up {term.warmup_epochs:g} '
                f'epochs')
        return '\n'.join(lines)

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
        """``loss_weight * warm-up factor`` of the ReviewKD term for the
        current epoch (0 without a connector)."""
        if self.connector is None:
            return 0.0
        return self.loss_weight * warmup_factor(self.warmup_epochs)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[BaseDataElement]) -> Dict[str, torch.Tensor]:
        """The student's task losses (keys prefixed ``student.``, times
        ``task_loss_weight``), ``loss_hcl`` and ``loss_<name>`` per extra
        term. Also logs ``loss_hcl.<level>`` (shallow to deep, part of
        ``loss_hcl``, not added again), ``distill_weight`` (lambda times
        the warm-up factor) and ``distill_weight.<name>`` per term."""
        self.student_tap.clear()
        self._student_logits = None
        student_losses = self.student.loss(inputs, data_samples)
        losses = {
            f'student.{k}': self._scale_task(k, v)
            for k, v in student_losses.items()
        }
        student_feats = self.student_tap.pop()
        weight = self.distill_factor()
        term_weights = {n: t.factor() for n, t in self.distill_terms.items()}
        one_sample = self.training and inputs.shape[0] == 1 and any(
            f.shape[-2:].numel() == 1 for f in student_feats)
        if one_sample and self.connector is not None:
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
            for name, term in self.distill_terms.items():
                if term.uses('abf')[0]:
                    term_weights[name] = 0.0
        active = [n for n, w in term_weights.items() if w > 0]
        student_in = FeatureInputs(student_feats,
                                   [lvl.pooled for lvl in
                                    self._paired_levels[0]],
                                   self._student_logits)
        teacher_in = None
        if weight > 0 or active:
            teacher_in = self._teacher_inputs(inputs, data_samples, active)
        if self.connector is not None:
            need_abf = weight > 0 or any(
                self.distill_terms[n].uses('abf')[0] for n in active)
            if need_abf:
                student_in.abf = self.connector(
                    student_feats,
                    [t.shape[-2:] for t in teacher_in.feats])
            self._review_term(losses, weight, student_in, teacher_in,
                              one_sample)
        for name, term in self.distill_terms.items():
            if name in active:
                losses[f'loss_{name}'] = term(student_in, teacher_in,
                                              data_samples) * \
                    term_weights[name]
            else:
                losses[f'loss_{name}'] = term.zero(student_in)
            losses[f'distill_weight.{name}'] = torch.tensor(
                term_weights[name], device=inputs.device)
        if self.grad_probe and self.training:
            self.grad_probe = False
            losses.update(self._probe_gradients(losses))
        return losses

    def _scale_task(self, key: str, value):
        if self.task_loss_weight == 1.0 or 'loss' not in key:
            return value
        if isinstance(value, (list, tuple)):
            return [v * self.task_loss_weight for v in value]
        return value * self.task_loss_weight

    @torch.no_grad()
    def _teacher_inputs(self, inputs: torch.Tensor, data_samples,
                        active: List[str]) -> FeatureInputs:
        """The teacher's features, and its logits only if an active term
        reads them."""
        self.teacher_tap.clear()
        if self.teacher_renorm is not None:  # teacher's own mean/std
            inputs = self.teacher_renorm(inputs, data_samples)
        feats = self.teacher.extract_feat(inputs)
        logits = None
        if any(self.distill_terms[n].uses('logits')[1] for n in active):
            logits = self.teacher.head(feats)
            if isinstance(logits, (list, tuple)):
                logits = logits[-1]
        return FeatureInputs(self.teacher_tap.pop(),
                             [lvl.pooled for lvl in self._paired_levels[1]],
                             logits)

    def _review_term(self, losses: dict, weight: float,
                     student: FeatureInputs,
                     teacher: Optional[FeatureInputs],
                     one_sample: bool = False) -> None:
        """``loss_hcl`` (and its levels) of the connector's outputs."""
        if weight > 0:
            targets = [
                teacher.feats[j] for j in self._connector_teacher_levels(
                    len(teacher.feats))
            ]
            loss = self.distill_loss(student.abf, targets,
                                     **self._loss_kwargs)
            if isinstance(loss, (list, tuple)):  # per level
                for i, level in enumerate(loss):
                    losses[f'loss_hcl.{i}'] = (level * weight).detach()
                loss = sum(loss)
            losses['loss_hcl'] = loss * weight
        else:
            # Keep the connector in the graph (zero gradient) so DDP without
            # find_unused_parameters works during the warm-up epoch.
            # (not run on a batch of one: BN at the 1x1 level would fail)
            outs = student.abf
            if outs is None and not one_sample:
                outs = self.connector(student.feats)
            losses['loss_hcl'] = sum(o.sum() for o in outs or []) * 0.0 + \
                sum(p.sum() for p in self.connector.parameters()) * 0.0
            self._log_zero_levels(
                losses,
                len(self._connector_teacher_levels(len(student.feats))))
        losses['distill_weight'] = torch.tensor(
            weight, device=losses['loss_hcl'].device)

    # ------------------------------------------------------------ diagnostics
    def _probe_gradients(self, losses: dict) -> Dict[str, torch.Tensor]:
        """Gradient norms of task and distillation losses in the student's
        last stage (see :func:`grad_norms`), logged and kept in
        ``last_grad_probe`` with whether every weight is at its full value
        (warm-up over), the only case the ratio is judged in."""
        distill_keys = [
            k for k in losses
            if k == 'loss_hcl' or k[len('loss_'):] in self.distill_terms
        ]
        norms = grad_norms(
            losses, distill_keys,
            last_stage_params(self.student, self._paired_levels[0]))
        review_weight = self.loss_weight if self.connector is not None \
            else 0.0
        factors = [(self.distill_factor(), review_weight)] + [
            (t.factor(), t.loss_weight) for t in self.distill_terms.values()
        ]
        self.last_grad_probe = dict(
            task=float(norms['grad_norm.task']),
            distill=float(norms['grad_norm.distill']),
            ratio=float(norms['grad_ratio']),
            full_weight=all(f == w for f, w in factors
                            if w > 0) and any(f > 0 for f, _ in factors))
        return norms

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
