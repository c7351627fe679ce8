# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The student's runtime is the runtime: a ReviewKD config inherits the
student's hooks, the distillation hooks are appended once, hooks written for
the student see it through the distiller (attribute forwarding), and the
student's EMA (DistillerEMAHook) averages the student and the connector,
never the teacher, through training, validation, checkpoints, resume and
the student export."""
import copy
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from helpers.fake_data import make_cifar100
from helpers.models import classifier
from helpers.tiny_config import tiny_distill_config
from mmreviewkd.engine.hooks import DistillerEMAHook
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.utils import export_student
from mmreviewkd.utils.config_check import load_config
from mmreviewkd.utils.distill_runtime import (DISTILL_HOOKS,
                                              prepare_distill_runtime)


def build_distiller():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(
            student=classifier(8),
            teacher=classifier(14),
            data_preprocessor=dict(
                type='mmpretrain.ClsDataPreprocessor', num_classes=10),
            teacher_feats=dict(preact=True))


@pytest.fixture(autouse=True)
def _epoch_zero():
    MessageHub.get_current_instance().update_info('epoch', 0)
    yield


# ------------------------------------------------------ attribute forwarding
def test_attributes_the_distiller_lacks_come_from_the_student():
    model = build_distiller()
    assert model.head is model.student.head
    assert model.backbone is model.student.backbone
    assert model.with_neck is True  # a property of the student
    # the distiller's own attributes win
    assert model.teacher is not model.student
    assert model.data_preprocessor is model.student.data_preprocessor
    assert model.loss_weight == 1.0
    # a hook setting an attribute of a student module reaches the student
    model.head.some_switch = True
    assert model.student.head.some_switch is True
    # never for private names, and a clear error for unknown ones
    with pytest.raises(AttributeError):
        model._not_there
    assert not hasattr(model, 'bbox_head')
    with pytest.raises(AttributeError, match="its student 'ImageClassifier'"):
        model.no_such_attribute
    # copies and pickles still work (no recursion through __getattr__)
    clone = copy.deepcopy(model)
    assert clone.head is clone.student.head


# ------------------------------------------------------ config preparation
def _distill_cfg(custom_hooks):
    return Config(
        dict(
            model=dict(type='mmreviewkd.ReviewKDDistiller'),
            custom_hooks=custom_hooks))


def test_distillation_hooks_are_appended_to_the_students_once():
    ema = dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')
    cfg = prepare_distill_runtime(
        _distill_cfg([
            dict(type='PreciseBNHook', num_samples=8), ema,
            dict(type='mmreviewkd.NonFiniteLossHook', action='skip')
        ]))
    assert cfg.custom_hooks[0] == dict(type='PreciseBNHook', num_samples=8)
    assert cfg.custom_hooks[1] == dict(
        type='mmreviewkd.DistillerEMAHook',
        momentum=1e-4,
        priority='ABOVE_NORMAL')
    # a listed distillation hook is the user's choice: not added again
    assert cfg.custom_hooks[2] == dict(
        type='mmreviewkd.NonFiniteLossHook', action='skip')
    assert cfg.custom_hooks[3:] == [
        h for h in DISTILL_HOOKS if 'NonFinite' not in h['type']
    ]
    again = prepare_distill_runtime(copy.deepcopy(cfg))
    assert again.custom_hooks == cfg.custom_hooks
    # the class itself is recognised too
    cfg = prepare_distill_runtime(_distill_cfg([dict(type=EMAHook)]))
    assert cfg.custom_hooks[0]['type'] == 'mmreviewkd.DistillerEMAHook'


def test_other_configs_are_left_alone():
    cfg = Config(
        dict(
            model=dict(type='ImageClassifier'),
            custom_hooks=[dict(type='EMAHook')]))
    assert prepare_distill_runtime(cfg).custom_hooks == [dict(type='EMAHook')]
    assert 'custom_hooks' not in prepare_distill_runtime(
        Config(dict(model=dict(type='mmdet.YOLOX'))))


def test_a_student_config_with_hooks_is_a_base(tmp_path):
    """``_base_ = [student config]`` with EMA in its custom_hooks: no
    duplicate key, the EMA becomes DistillerEMAHook, our hooks follow."""
    config = tmp_path / 'reviewkd_convnext.py'
    config.write_text(
        "_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']\n"
        'model = dict(_delete_=True, type="mmreviewkd.ReviewKDDistiller",\n'
        '             student={{_base_.model}},\n'
        '             teacher=dict(cfg_path="mmpretrain::convnext/'
        'convnext-small_32xb128_in1k.py"))\n')
    cfg = load_config(str(config))
    ema = dict(cfg.custom_hooks[0])
    # MMEngine scopes what an "mmpretrain::" base defines
    assert ema.pop('_scope_') == 'mmpretrain'
    assert ema == dict(
        type='mmreviewkd.DistillerEMAHook',
        momentum=1e-4,
        priority='ABOVE_NORMAL')
    assert cfg.custom_hooks[1:] == list(DISTILL_HOOKS)
    assert cfg.train_cfg.max_epochs == 300  # the student's schedule
    # built the way the Runner builds custom hooks
    entry = {k: v for k, v in cfg.custom_hooks[0].items() if k != 'priority'}
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        assert type(HOOKS.build(entry)) is DistillerEMAHook


# --------------------------------------------------------- DistillerEMAHook
def fake_runner(model, resume=False):
    return SimpleNamespace(
        model=model,
        iter=0,
        epoch=0,
        _resume=resume,
        logger=MMLogger.get_current_instance())


def perturb(module, value):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(value)


def test_ema_averages_the_student_and_connector_not_the_teacher():
    model = build_distiller()
    hook = DistillerEMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    averaged = hook.ema_model.module.state_dict()
    assert averaged and not any(k.startswith('teacher.') for k in averaged)
    assert {k.split('.')[0] for k in averaged} >= {'student', 'connector'}
    teacher_storage = {
        p.data_ptr()
        for p in model.teacher.state_dict().values()
    }
    assert not any(v.data_ptr() in teacher_storage
                   for v in hook.ema_model.state_dict().values())
    n_avg = sum(p.numel() for p in hook.ema_model.module.parameters())
    assert n_avg == sum(p.numel() for p in model.student.parameters()) + sum(
        p.numel() for p in model.connector.parameters())
    teacher = copy.deepcopy(model.teacher.state_dict())

    hook.after_train_iter(runner, 0)  # EMA = current weights
    start = copy.deepcopy(model.student.state_dict())
    perturb(model.student, 1.0)
    perturb(model.connector, 1.0)
    hook.after_train_iter(runner, 1)  # EMA moves half way
    w = 'backbone.conv1.weight'
    raw = model.student.state_dict()[w].clone()
    # validation runs with the averaged weights, then the raw ones return
    hook.before_val_epoch(runner)
    torch.testing.assert_close(model.student.state_dict()[w], start[w] + 0.5)
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher[k], msg=k)
    hook.after_val_epoch(runner)
    torch.testing.assert_close(model.student.state_dict()[w], raw)
    for k, v in model.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher[k], msg=k)


def test_ema_checkpoint_keys_and_resume(tmp_path):
    model = build_distiller()
    hook = DistillerEMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)
    perturb(model.student, 1.0)
    hook.after_train_iter(runner, 1)
    ckpt = dict(state_dict=model.state_dict())
    keys = set(ckpt['state_dict'])
    hook.before_save_checkpoint(runner, ckpt)
    # the model's keys, averaged values in state_dict, no teacher in the EMA
    assert set(ckpt['state_dict']) == keys
    ema_keys = set(ckpt['ema_state_dict']) - {'steps'}
    assert ema_keys and all(k.startswith('module.') for k in ema_keys)
    assert not any(k.startswith('module.teacher.') for k in ema_keys)
    w = 'student.backbone.conv1.weight'
    torch.testing.assert_close(ckpt['state_dict'][w],
                               model.state_dict()[w] - 0.5)
    # the exported student loads strictly into the plain student
    student = build_distiller().student
    student.load_state_dict(export_student(ckpt)['state_dict'], strict=True)
    torch.testing.assert_close(student.state_dict()['backbone.conv1.weight'],
                               ckpt['state_dict'][w])
    path = str(tmp_path / 'ckpt.pth')
    torch.save(ckpt, path)

    # resume: the raw weights go back to the model, the EMA to the hook
    other = build_distiller()
    resumed = DistillerEMAHook(momentum=0.5)
    runner = fake_runner(other, resume=True)
    resumed.before_run(runner)
    loaded = torch.load(path, weights_only=False)
    resumed.after_load_checkpoint(runner, loaded)
    other.load_state_dict(loaded['state_dict'])
    torch.testing.assert_close(other.state_dict()[w], model.state_dict()[w])
    torch.testing.assert_close(resumed.ema_model.state_dict()['module.' + w],
                               hook.ema_model.state_dict()['module.' + w])

    # load_from without resume: the EMA starts from the checkpoint's
    # (averaged) weights; its teacher keys are not the EMA's business
    fresh = DistillerEMAHook()
    runner = fake_runner(build_distiller())
    fresh.before_run(runner)
    fresh.after_load_checkpoint(runner, torch.load(path, weights_only=False))
    torch.testing.assert_close(fresh.ema_model.state_dict()['module.' + w],
                               ckpt['state_dict'][w])


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_cifar100(
        str(tmp_path_factory.mktemp('ema') / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=8,
        num_test=8)


def test_ema_through_the_runner(data_root, tmp_path):
    """A distiller config with the student's EMAHook trains, validates with
    the averaged student, saves checkpoints whose EMA has no teacher, and
    exports the averaged student."""
    teacher_ckpt = str(tmp_path / 'teacher.pth')
    torch.save(build_distiller().teacher.state_dict(), teacher_ckpt)
    config = tmp_path / 'ema.py'
    config.write_text(
        tiny_distill_config(
            data_root,
            teacher_ckpt=teacher_ckpt,
            batch_size=4,  # two iterations: the average differs
            max_epochs=1,
            warmup_epochs=0,
            extra_hooks=[dict(type='EMAHook', momentum=0.2, priority=49)]))
    cfg = load_config(str(config))
    assert cfg.custom_hooks[0] == dict(
        type='mmreviewkd.DistillerEMAHook', momentum=0.2, priority=49)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    teacher = torch.load(teacher_ckpt)
    runner.train()
    hooks = [h for h in runner.hooks if isinstance(h, DistillerEMAHook)]
    assert len(hooks) == 1
    for k, v in runner.model.teacher.state_dict().items():
        torch.testing.assert_close(v, teacher[k], msg=k)
    ckpt = torch.load(
        osp.join(cfg.work_dir, 'epoch_1.pth'), weights_only=False)
    ema_keys = set(ckpt['ema_state_dict']) - {'steps'}
    assert not any(k.startswith('module.teacher.') for k in ema_keys)
    assert {k[len('module.'):] for k in ema_keys} <= set(ckpt['state_dict'])
    exported = torch.load(
        osp.join(cfg.work_dir, 'student_final.pth'), weights_only=False)
    for k, v in exported['state_dict'].items():
        # the averaged student, as in the checkpoint's state_dict
        torch.testing.assert_close(v, ckpt['state_dict']['student.' + k])
    w = 'backbone.conv1.weight'
    assert not torch.equal(exported['state_dict'][w],
                           runner.model.student.state_dict()[w])
    # and it loads into the plain student
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        student = MODELS.build(copy.deepcopy(cfg.model.student))
    student.load_state_dict(exported['state_dict'], strict=True)
    inputs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    data = runner.model.data_preprocessor(
        dict(
            inputs=list(inputs),
            data_samples=[DataSample().set_gt_label(0) for _ in range(2)]),
        False)
    assert student(data['inputs'], mode='tensor').shape == (2, 10)
