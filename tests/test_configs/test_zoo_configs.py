# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The model-zoo pairs (``configs/reviewkd/zoo``): short configs that inherit
an mmpretrain / mmdet zoo config as the student and name a zoo teacher, with
no per-pair feature settings. Each builds the way MMEngine's Runner builds
it, runs one distiller ``loss`` step on a small input, and keeps the
student's own hooks (EMA as DistillerEMAHook, PreciseBN, pipeline and mode
switches), which act on the distiller's student."""
import copy
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import HOOKS, MODELS, DefaultScope

from mmreviewkd.models.distillers import ReviewKDDistiller
from mmreviewkd.models.distillers.review_kd import build_model_from_ref
from mmreviewkd.utils.config_check import load_config
from mmreviewkd.utils.distill_runtime import DISTILL_HOOKS, hook_type_name

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ZOO = osp.join(ROOT, 'configs', 'reviewkd', 'zoo')

CLS_PAIRS = {
    'reviewkd_resnet50_mobilenetv2_8xb32_in1k':
    ('mmpretrain::mobilenet_v2/', 'MobileNetV2', 'ResNet', []),
    'reviewkd_convnext-tiny_resnet18_8xb32_in1k':
    ('mmpretrain::resnet/', 'ResNet', 'ConvNeXt', []),
    'reviewkd_efficientnet-b2_efficientnet-b0_8xb32_in1k':
    ('mmpretrain::efficientnet/', 'EfficientNet', 'EfficientNet', []),
    'reviewkd_swin-tiny_resnet18_8xb32_in1k': ('mmpretrain::resnet/', 'ResNet',
                                               'SwinTransformer', []),
    'reviewkd_regnetx-1.6gf_regnetx-400mf_8xb128_in1k':
    ('mmpretrain::regnet/', 'RegNet', 'RegNet', ['PreciseBNHook']),
}
DET_PAIRS = {
    'reviewkd_rtmdet-l_rtmdet-s_8xb32-300e_coco':
    ('RTMDet', ['mmreviewkd.DistillerEMAHook', 'PipelineSwitchHook']),
    'reviewkd_yolox-l_yolox-s_8xb8-300e_coco':
    ('YOLOX',
     ['YOLOXModeSwitchHook', 'SyncNormHook', 'mmreviewkd.DistillerEMAHook']),
}


def _name(path):
    return osp.splitext(osp.basename(path))[0]


def _zoo(name):
    return osp.join(ZOO, f'{name}.py')


def test_every_zoo_config_is_tested():
    found = {_name(p) for p in glob.glob(osp.join(ZOO, '*.py'))}
    assert found == set(CLS_PAIRS) | set(DET_PAIRS)


def build_as_runner(cfg):
    """Build ``cfg.model`` the way ``Runner.__init__`` does: the top-level
    ``data_preprocessor`` merged in with ``setdefault``, built by MMEngine's
    root ``MODELS`` in the config's ``default_scope``."""
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             copy.deepcopy(cfg.data_preprocessor))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(model_cfg)


def check_config(cfg, student_hooks):
    """A short zoo config: the distiller with default feature settings, a
    checkpoint named as the zoo file, the student's hooks first and the
    distillation hooks appended once."""
    assert cfg.model.type == 'mmreviewkd.ReviewKDDistiller'
    for key in ('student_feats', 'teacher_feats', 'connector'):
        assert key not in cfg.model, f'{key}: no per-pair settings'
    assert cfg.model.teacher_ckpt.startswith('checkpoints/')
    assert osp.basename(cfg.model.teacher_ckpt).endswith('.pth')
    types = [h['type'] for h in cfg.custom_hooks]
    assert types[:len(student_hooks)] == student_hooks
    assert 'EMAHook' not in types
    names = [hook_type_name(h) for h in cfg.custom_hooks]
    for hook in DISTILL_HOOKS:
        assert names.count(hook_type_name(hook)) == 1


def check_step(model, losses):
    """Finite, positive ``loss_hcl``; gradients in the student and the
    connector, none in the frozen teacher."""
    assert torch.isfinite(losses['loss_hcl'])
    assert losses['loss_hcl'].item() > 0
    total, _ = model.parse_losses(losses)  # what the train step optimises
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.student.parameters())
    assert all(p.grad is not None for p in model.connector.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())


# ------------------------------------------------------------ classification
def cls_loss(model, size=64, n=2):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i * 7) for i in range(n)]
    data = model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), True)
    model.train()
    return model(**data, mode='loss')


@pytest.mark.parametrize('name', sorted(CLS_PAIRS))
def test_cls_zoo_pair_builds_and_steps(name, tmp_path):
    student_ref, s_backbone, t_backbone, student_hooks = CLS_PAIRS[name]
    cfg = load_config(_zoo(name))
    check_config(cfg, student_hooks)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.teacher.cfg_path.startswith('mmpretrain::')
    assert cfg.model.infer_input_shape == (3, 224, 224)
    cfg.model.teacher_ckpt = None  # the user's download
    if t_backbone == 'SwinTransformer':
        # a state dict of the zoo architecture loads strictly
        teacher = build_model_from_ref(cfg.model.teacher, 'teacher')
        ckpt = str(tmp_path / 'swin_tiny.pth')
        torch.save(teacher.state_dict(), ckpt)
        cfg.model.teacher_ckpt = ckpt
    model = build_as_runner(cfg)
    assert isinstance(model, ReviewKDDistiller)
    assert type(model.student.backbone).__name__ == s_backbone
    assert type(model.teacher.backbone).__name__ == t_backbone
    if t_backbone == 'SwinTransformer':
        for k, v in model.teacher.state_dict().items():
            torch.testing.assert_close(v, teacher.state_dict()[k], msg=k)
    # the student's normalisation is the config's data_preprocessor
    mean = model.data_preprocessor.mean.flatten().tolist()
    assert mean == pytest.approx(cfg.data_preprocessor.mean)
    # 64 x 64 inputs; Swin-T (window 7, no padding of small maps) needs
    # 7 x 7 tokens at stride 32, so 224 x 224 is its smallest input
    size = 224 if t_backbone == 'SwinTransformer' else 64
    check_step(model, cls_loss(model, size))


def test_precise_bn_updates_the_student_not_the_teacher():
    """RegNetX-400MF's PreciseBNHook, run on the distiller: student BN
    statistics are recomputed, the frozen teacher's stay."""
    from mmpretrain.engine.hooks.precise_bn_hook import update_bn_stats
    from mmpretrain.structures import DataSample
    cfg = load_config(_zoo('reviewkd_regnetx-1.6gf_regnetx-400mf_8xb128_in1k'))
    assert hook_type_name(cfg.custom_hooks[0]) == 'PreciseBNHook'
    cfg.model.teacher_ckpt = None
    cfg.model.infer_input_shape = (3, 64, 64)
    model = build_as_runner(cfg)
    model.train()
    teacher = copy.deepcopy(model.teacher.state_dict())
    student = copy.deepcopy(model.student.state_dict())
    batch = dict(
        inputs=list(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)),
        data_samples=[DataSample().set_gt_label(0) for _ in range(2)])
    loader = type(
        'Loader', (), {
            'batch_size': 2,
            '__len__': lambda self: 2,
            '__iter__': lambda self: iter([batch, batch])
        })()
    update_bn_stats(model, loader, num_samples=4, logger='silent')
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher[k], msg=k)
    assert any(not torch.equal(v, student[k])
               for k, v in model.student.state_dict().items()
               if 'running_mean' in k)


# ---------------------------------------------------------------- detection
def det_data(model, size=128, n=1):
    """``n`` random images with two ground-truth boxes each, through the
    student's data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    samples = []
    for _ in range(n):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[8., 12., 60., 70.], [50., 40., 120., 110.]]),
            labels=torch.tensor([1, 7]))
        samples.append(sample)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    # YOLOX's BatchSyncRandomResize reads the iteration (the runner's first
    # keeps the size)
    MessageHub.get_current_instance().update_info('iter', 0)
    return model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), True)


@pytest.fixture(scope='module')
def det_models():
    """The detection distillers, built once per module."""
    built = {}

    def get(name):
        if name not in built:
            cfg = load_config(_zoo(name))
            run_cfg = copy.deepcopy(cfg)
            run_cfg.model.teacher_ckpt = None  # the user's download
            built[name] = (cfg, build_as_runner(run_cfg))
        return built[name]

    return get


@pytest.mark.parametrize('name', sorted(DET_PAIRS))
def test_det_zoo_pair_builds_and_steps(name, det_models):
    det_type, student_hooks = DET_PAIRS[name]
    cfg, model = det_models(name)
    check_config(cfg, student_hooks)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.teacher.cfg_path.startswith('mmdet::')
    assert type(model.student).__name__ == det_type
    assert type(model.teacher).__name__ == det_type
    # different neck widths: 128 (S) -> 256 (L), three levels
    assert model.connector.in_channels == [128, 128, 128]
    assert model.connector.out_channels == [256, 256, 256]
    ema = [h for h in cfg.custom_hooks if 'EMA' in h['type']][0]
    assert ema['ema_type'] == 'ExpMomentumEMA'
    assert ema['update_buffers'] is True and ema['priority'] == 49
    model.train()
    check_step(model, model(**det_data(model), mode='loss'))


def _hook(cfg, type_name):
    entry = [h for h in cfg.custom_hooks if hook_type_name(h) == type_name][0]
    entry = {k: v for k, v in entry.items() if k != 'priority'}
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return HOOKS.build(entry)


class FakeDataset:

    def __init__(self):
        self.skip_type_keys = None
        self.pipeline = None

    def update_skip_type_keys(self, keys):
        self.skip_type_keys = keys


def fake_runner(model, epoch, max_epochs):
    loader = SimpleNamespace(dataset=FakeDataset(), persistent_workers=False)
    return SimpleNamespace(
        model=model,
        epoch=epoch,
        max_epochs=max_epochs,
        train_dataloader=loader,
        logger=MMLogger.get_current_instance())


def test_yolox_mode_switch_fires_on_the_student(det_models):
    cfg, model = det_models('reviewkd_yolox-l_yolox-s_8xb8-300e_coco')
    hook = _hook(cfg, 'YOLOXModeSwitchHook')
    max_epochs = cfg.train_cfg.max_epochs
    switch = max_epochs - hook.num_last_epochs - 1  # 0-based epoch
    assert model.student.bbox_head.use_l1 is False
    early = fake_runner(model, switch - 1, max_epochs)
    hook.before_train_epoch(early)
    assert model.student.bbox_head.use_l1 is False
    runner = fake_runner(model, switch, max_epochs)
    hook.before_train_epoch(runner)
    assert model.student.bbox_head.use_l1 is True
    assert model.bbox_head is model.student.bbox_head
    assert model.teacher.bbox_head.use_l1 is False
    assert runner.train_dataloader.dataset.skip_type_keys == ('Mosaic',
                                                              'RandomAffine',
                                                              'MixUp')
    # the student's loss now has the L1 term
    model.train()
    losses = model(**det_data(model), mode='loss')
    assert 'student.loss_l1' in losses
    model.student.bbox_head.use_l1 = False


def test_rtmdet_pipeline_switch_takes_effect():
    cfg = load_config(_zoo('reviewkd_rtmdet-l_rtmdet-s_8xb32-300e_coco'))
    hook = _hook(cfg, 'PipelineSwitchHook')
    assert hook.switch_epoch == 280
    runner = fake_runner(None, 280, cfg.train_cfg.max_epochs)
    with DefaultScope.overwrite_default_scope('mmdet'):
        hook.before_train_epoch(runner)
    pipeline = runner.train_dataloader.dataset.pipeline
    names = [type(t).__name__ for t in pipeline.transforms]
    assert 'CachedMosaic' not in names and 'RandomResize' in names
