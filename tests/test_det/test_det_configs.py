# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Every shipped COCO config builds, infers the FPN channels and runs one
distillation step on a tiny real-format COCO batch; the teacher runs only
its backbone + neck, once, and gets no gradient."""
import ast
import copy
import glob
import inspect
import os.path as osp

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from helpers import make_coco
from mmreviewkd.models.distillers import ReviewKDDistiller
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.config_check import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# The paper's / authors' per-pair settings: lambda, teacher depth, student
# backbone, task
EXPECTED = {
    'reviewkd_faster-rcnn_r101_r18': (1.2, 101, ('ResNet', 18), 'FasterRCNN'),
    'reviewkd_faster-rcnn_r101_r50': (1.0, 101, ('ResNet', 50), 'FasterRCNN'),
    'reviewkd_faster-rcnn_r50_mobilenetv2':
    (2.0, 50, ('MobileNetV2', None), 'FasterRCNN'),
    'reviewkd_mask-rcnn_r101_r18': (1.5, 101, ('ResNet', 18), 'MaskRCNN'),
    'reviewkd_mask-rcnn_r101_r50': (0.8, 101, ('ResNet', 50), 'MaskRCNN'),
    'reviewkd_mask-rcnn_r50_mobilenetv2':
    (1.0, 50, ('MobileNetV2', None), 'MaskRCNN'),
    'reviewkd_retinanet_r101_r50': (1.0, 101, ('ResNet', 50), 'RetinaNet'),
}
# FPN inputs of the students (channels of the backbone levels it reads)
STUDENT_FPN_IN = {
    18: [64, 128, 256, 512],
    50: [256, 512, 1024, 2048],
    None: [24, 32, 96, 1280],  # mmdet MobileNetV2, out_indices (1, 2, 4, 7)
}
# strides of the distilled FPN levels
STRIDES = {
    'FasterRCNN': [4, 8, 16, 32, 64],  # P2..P6
    'MaskRCNN': [4, 8, 16, 32, 64],
    'RetinaNet': [8, 16, 32, 64, 128],  # P3..P7
}
INFER = 128

DISTILL_CFGS = sorted(glob.glob(osp.join(ROOT, 'configs/reviewkd/coco/*.py')))
BASELINE_CFGS = sorted(
    glob.glob(osp.join(ROOT, 'configs/baselines/coco/*.py')))


def _key(path):
    return osp.basename(path).split('_fpn_')[0]


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return make_coco(
        str(tmp_path_factory.mktemp('coco_cfg')), num_train=2, num_val=1)


def tiny_train_batch(cfg, data_root, n=2):
    """``n`` samples from the config's own train pipeline on tiny COCO,
    resized to about 100-160 px (non-square, padded batch)."""
    from mmdet.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.data_root = data_root + '/'
    for t in ds_cfg.pipeline:
        if t.type == 'RandomChoiceResize':
            t.scales = [(160, 96), (160, 128)]
        if t.type == 'RandomFlip':
            t.prob = 0.
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(ds_cfg)
        return pseudo_collate([dataset[i] for i in range(n)])


def build(cfg):
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return MODELS.build(cfg.model)


class CallCounter:
    """Counts forward calls of modules by name."""

    def __init__(self, modules):
        self.counts = {name: 0 for name in modules}
        self.handles = [
            m.register_forward_hook(self._hook(name))
            for name, m in modules.items()
        ]

    def _hook(self, name):

        def hook(module, args, output):
            self.counts[name] += 1

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def teacher_head_modules(teacher):
    """Every teacher submodule outside backbone and neck (heads, RoI
    extractors, the teacher's own data preprocessor...)."""
    return {
        name: m
        for name, m in teacher.named_modules()
        if name and not name.startswith(('backbone', 'neck'))
    }


def test_every_det_config_has_an_expectation():
    assert {_key(p) for p in DISTILL_CFGS} == set(EXPECTED)
    assert {osp.basename(p).split('_4xb2')[0]
            for p in BASELINE_CFGS} == {
                'faster-rcnn_r18_fpn', 'faster-rcnn_mobilenetv2_fpn',
                'mask-rcnn_r18_fpn', 'mask-rcnn_mobilenetv2_fpn'
            }


def _bases(path):
    """The ``_base_`` entry of a config file, as written."""
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id',
                                                    None) == '_base_':
            return ast.literal_eval(node.value)


def test_coco_schedule_bases_are_one_chain():
    """The instance-segmentation schedule inherits the detection one (which
    inherits mmdet's detectron2-aligned 90k config) and adds only masks."""
    common = osp.join(ROOT, 'configs/_base_/common')
    det_path = osp.join(common, 'ms-180k_coco.py')
    ins_path = osp.join(common, 'ms-poly-180k_coco-instance.py')
    assert _bases(det_path) == 'mmdet::common/ms-90k_coco.py'
    assert _bases(ins_path) == './ms-180k_coco.py'
    det, ins = load_config(det_path), load_config(ins_path)
    for key in ('train_cfg', 'param_scheduler', 'optim_wrapper',
                'auto_scale_lr', 'default_hooks', 'log_processor'):
        assert ins[key] == det[key], key
    assert det.train_cfg.max_iters == 180000
    assert det.optim_wrapper.optimizer.lr == 0.01
    assert det.auto_scale_lr.base_batch_size == 8
    for cfg, masks in ((det, False), (ins, True)):
        assert cfg.train_dataloader.batch_size == 2
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            pipeline = cfg[loader].dataset.pipeline
            assert pipeline[0].imdecode_backend == 'pillow'
            load = [t for t in pipeline if t.type == 'LoadAnnotations']
            assert len(load) == 1
            assert load[0].get('with_mask', False) == masks
            assert load[0].get('poly2mask', True) is not masks
    assert det.val_evaluator.metric == 'bbox'
    assert ins.val_evaluator.metric == ins.test_evaluator.metric == [
        'bbox', 'segm'
    ]


@pytest.mark.parametrize('path', DISTILL_CFGS, ids=_key)
def test_det_distill_config_builds_and_steps(path, coco):
    lam, t_depth, (s_type, s_depth), det_type = EXPECTED[_key(path)]
    cfg = load_config(path)
    # --- the recipe ----------------------------------------------------
    assert cfg.model.type == 'mmreviewkd.ReviewKDDistiller'
    assert cfg.model.loss_weight == lam
    # only what differs from the distiller's defaults (lambda always stated);
    # ABF mid defaults to min(512, 256) = 256
    params = inspect.signature(ReviewKDDistiller.__init__).parameters
    for name, param in params.items():
        if name in cfg.model and name != 'loss_weight' and (
                param.default is not inspect.Parameter.empty):
            assert cfg.model[name] != param.default, f'{name} is the default'
    assert 'mid_channels' not in cfg.model.get('connector', {})
    assert cfg.model.teacher_ckpt.startswith('checkpoints/')
    assert '3x' in cfg.model.teacher.cfg_path  # the 3x model-zoo teachers
    assert dict(type='mmreviewkd.StudentExportHook') in cfg.custom_hooks
    assert any(h['type'] == 'mmreviewkd.TeacherEvalHook'
               for h in cfg.custom_hooks)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 180000
    assert cfg.param_scheduler[-1].milestones == [120000, 160000]
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 8
    assert cfg.optim_wrapper.optimizer.lr == (0.005 if det_type == 'RetinaNet'
                                              else 0.01)
    scales = cfg.train_dataloader.dataset.pipeline[2].scales
    assert sorted(s[1] for s in scales) == list(range(640, 801, 32))
    metrics = cfg.val_evaluator.metric
    assert metrics == (['bbox', 'segm'] if det_type == 'MaskRCNN' else 'bbox')
    assert cfg.val_evaluator.type == 'CocoMetric'
    # --- the model ----------------------------------------------------
    cfg.model.teacher_ckpt = None  # the user's download; weights don't matter
    model = build(cfg)
    assert model.loss_weight == lam and model.warmup_epochs == 0
    assert type(model.student).__name__ == det_type
    assert type(model.teacher).__name__ == det_type
    assert model.teacher.backbone.depth == t_depth
    assert type(model.student.backbone).__name__ == s_type
    if s_depth is not None:
        assert model.student.backbone.depth == s_depth
    assert model.student.neck.in_channels == STUDENT_FPN_IN[s_depth]
    assert model.teacher_renorm is None  # same ImageNet mean/std, RGB
    assert model.connector.in_channels == [256] * 5
    assert model.connector.out_channels == [256] * 5
    assert model.connector.mid_channels == 256
    s_shapes, t_shapes = model.infer_feature_shapes((3, INFER, INFER))
    assert [s[-1] for s in s_shapes
            ] == [-(-INFER // st) for st in STRIDES[det_type]]
    assert [tuple(s) for s in s_shapes] == [tuple(t) for t in t_shapes]

    # --- one step on a real-format padded batch -----------------------
    model.train()
    data = model.data_preprocessor(
        tiny_train_batch(cfg, coco['data_root']), True)
    inputs = data['inputs']
    assert inputs.shape[-2] != inputs.shape[-1]  # non-square, padded
    heads = CallCounter(teacher_head_modules(model.teacher))
    passes = CallCounter({
        'teacher.backbone': model.teacher.backbone,
        'teacher.neck': model.teacher.neck,
        'student.backbone': model.student.backbone,
        'student.neck': model.student.neck,
    })
    try:
        losses = model(**data, mode='loss')
    finally:
        heads.remove()
        passes.remove()
    fired = [name for name, n in heads.counts.items() if n]
    assert not fired, f'teacher modules outside backbone/neck ran: {fired}'
    # one backbone + neck pass each: student features come from its loss()
    assert set(passes.counts.values()) == {1}, passes.counts
    assert losses['distill_weight'].item() == pytest.approx(lam)
    assert losses['loss_hcl'].item() > 0
    total, _ = model.parse_losses(losses)  # RPN losses are per-level lists
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.connector.parameters())
    for part in ('backbone', 'neck'):
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in getattr(model.student, part).parameters())
    assert all(p.grad is None and not p.requires_grad
               for p in model.teacher.parameters())
    assert not any(m.training for m in model.teacher.modules())


@pytest.mark.parametrize(
    'path', BASELINE_CFGS, ids=lambda p: osp.basename(p).split('_4xb2')[0])
def test_det_baseline_config_builds_and_steps(path, coco):
    cfg = load_config(path)
    assert cfg.train_cfg.max_iters == 180000
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    model = build(cfg)
    assert model.neck.in_channels == STUDENT_FPN_IN[18 if 'r18' in
                                                    path else None]
    model.train()
    data = model.data_preprocessor(
        tiny_train_batch(cfg, coco['data_root']), True)
    losses = model(**data, mode='loss')
    keys = {'loss_rpn_cls', 'loss_cls', 'loss_bbox'}
    if 'mask-rcnn' in path:
        keys.add('loss_mask')
    assert keys <= set(losses)
