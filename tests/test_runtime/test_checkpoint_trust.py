# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Nothing runs on weights that do not fit, checkpoints are read without
running pickled code, and the bad inputs of the first hour end in one line
that names the problem and the fix."""
import errno
import io
import json
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.registry import DefaultScope

from helpers.fake_data import make_cifar100
from helpers.models import classifier
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import run_tool
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.utils import export_student
from mmreviewkd.utils import checkpoint_io
from mmreviewkd.utils.checkpoint_check import (check_resume_checkpoint,
                                               fit_checkpoint, read_checkpoint)
from mmreviewkd.utils.cli_errors import run_cli
from mmreviewkd.utils.config_check import check_launcher, load_config
from mmreviewkd.utils.errors import CheckpointError, ConfigError


def distiller(student=8, teacher=14):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(
            student=classifier(student),
            teacher=classifier(teacher),
            teacher_feats=dict(preact=True))


def one_line(message):
    assert '\n' not in message and '\x1b' not in message
    return message


class Evil:
    """Unpickling it would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


# ---------------------------------------------------------- reading files
def test_directory_pickled_module_and_malicious_pickle(tmp_path):
    with pytest.raises(CheckpointError, match='is a directory; give the '
                       'checkpoint file') as info:
        read_checkpoint(str(tmp_path), 'teacher_ckpt')
    one_line(str(info.value))

    module = tmp_path / 'module.pth'
    torch.save(nn.Linear(2, 2), module)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(str(module))
    message = one_line(str(info.value))
    assert 'holds pickled Python objects beyond weights' in message
    assert 'torch.nn.modules.linear.Linear' in message
    assert 'refused for safety' in message and 'weights_only=False' in message

    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': Evil(str(marker))}, evil)
    with pytest.raises(CheckpointError, match='refused for safety') as info:
        read_checkpoint(str(evil))
    one_line(str(info.value))
    assert not marker.exists()  # nothing was executed


def test_teacher_ckpt_directory_is_named_as_such(tmp_path):
    with pytest.raises(CheckpointError,
                       match=r"teacher_ckpt '.*' is a directory"):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            ReviewKDDistiller(
                student=classifier(8),
                teacher=classifier(14),
                teacher_ckpt=str(tmp_path))


# ------------------------------------------------------ fitting the model
def test_checkpoints_go_where_they_fit_or_fail_in_one_line():
    model = distiller()
    ckpt = dict(state_dict=model.state_dict())
    target, state, note = fit_checkpoint(model, ckpt, 'd.pth')
    assert target is model and note is None

    # an exported student into the distiller config: into its student
    exported = export_student(ckpt)
    target, state, note = fit_checkpoint(model, exported, 'student.pth')
    assert target is model.student and 'student-only checkpoint' in note
    target.load_state_dict(state, strict=True)

    # a distiller checkpoint into the student's plain config
    plain = model.student
    with pytest.raises(CheckpointError) as info:
        fit_checkpoint(plain, ckpt, 'd.pth')
    message = one_line(str(info.value))
    assert 'unexpected keys' in message
    assert 'this is a distiller checkpoint' in message
    assert 'extract_student.py' in message

    # another pair's distiller checkpoint, another student's export
    other = distiller(student=14, teacher=20)
    with pytest.raises(CheckpointError,
                       match='written for another model') as info:
        fit_checkpoint(model, dict(state_dict=other.state_dict()), 'o.pth')
    one_line(str(info.value))
    with pytest.raises(CheckpointError,
                       match='not a checkpoint of this student'):
        fit_checkpoint(model, export_student(other.state_dict()), 's.pth')


def test_resume_refuses_exports_and_other_configs(tmp_path):
    model = distiller()
    exported = tmp_path / 'student_final.pth'
    torch.save(export_student(dict(state_dict=model.state_dict())), exported)
    with pytest.raises(CheckpointError,
                       match='it is not a training checkpoint') as info:
        check_resume_checkpoint(model, str(exported))
    assert 'load_from=' in one_line(str(info.value))

    other = distiller(student=14, teacher=20)
    training = dict(
        state_dict=other.state_dict(),
        optimizer={},
        message_hub={},
        meta=dict(epoch=3, iter=30))
    path = tmp_path / 'epoch_3.pth'
    torch.save(training, path)
    with pytest.raises(CheckpointError, match='written for another model'):
        check_resume_checkpoint(model, str(path))
    training['state_dict'] = model.state_dict()
    torch.save(training, path)
    check_resume_checkpoint(model, str(path))  # fits


# ------------------------------------------------------- other bad input
def test_launcher_without_its_environment(monkeypatch):
    for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        check_launcher('pytorch')
    message = one_line(str(info.value))
    assert 'RANK, WORLD_SIZE' in message and 'tools/dist_train.sh' in message
    check_launcher('none')
    for name, value in (('RANK', '0'), ('WORLD_SIZE', '1'),
                        ('MASTER_ADDR', '127.0.0.1'), ('MASTER_PORT', '1')):
        monkeypatch.setenv(name, value)
    check_launcher('pytorch')


def test_config_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / 'broken.py'
    path.write_text('a = 1\nmodel = dict(type="X",, b=2)\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = one_line(str(info.value))
    assert f'config file {path} has a Python syntax error at line 2' in \
        message
    assert 'model = dict(type="X",, b=2)' in message


@pytest.mark.parametrize('content,state',
                         [('', 'is empty'),
                          ('{"images": [', 'is not valid JSON')])
def test_empty_or_invalid_coco_json(tmp_path, content, state, monkeypatch):
    monkeypatch.delenv('MMREVIEWKD_DEBUG', raising=False)
    ann = tmp_path / 'instances_val2017.json'
    ann.write_text(content)

    def main():
        from pycocotools.coco import COCO
        COCO(str(ann))

    stderr = io.StringIO()
    assert run_cli(main, stderr=stderr) == 1
    line = stderr.getvalue()
    assert line.count('\n') == 1 and 'Traceback' not in line
    assert f"the JSON file '{ann}' {state}" in line


def test_disk_full_names_the_file_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv('MMREVIEWKD_DEBUG', raising=False)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io.os, 'fsync', full)
    target = tmp_path / 'epoch_1.pth'
    stderr = io.StringIO()
    assert run_cli(
        lambda: checkpoint_io.atomic_write_bytes(b'x' * 1024, target),
        stderr=stderr) == 1
    line = stderr.getvalue()
    assert line.count('\n') == 1 and 'Traceback' not in line
    assert f'cannot write {target}' in line
    assert 'No space left on device' in line
    assert not target.exists() and os.listdir(tmp_path) == []


# ------------------------------------------------- through the tools (CLI)
@pytest.fixture(scope='module')
def tools_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('trust')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=9,
        num_test=8)
    cfg = tmp / 'tiny.py'
    # 9 samples, batch 8: the last batch holds one sample
    cfg.write_text(tiny_distill_config(data, max_epochs=1) +
                   '\ntrain_dataloader.update(drop_last=False)\n')
    model = distiller()
    ckpt = tmp / 'distiller.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    other = tmp / 'other.pth'
    torch.save(
        dict(state_dict=distiller(student=14, teacher=20).state_dict()),
        other)
    student = tmp / 'student.pth'
    torch.save(export_student(dict(state_dict=model.state_dict())), student)
    return dict(tmp=tmp, cfg=str(cfg), ckpt=str(ckpt), other=str(other),
                student=str(student))


def error_line(proc):
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_tools_never_evaluate_weights_that_do_not_fit(tools_case):
    c = tools_case
    work = str(c['tmp'] / 'work')
    # another pair's checkpoint: one line, exit 1
    line = error_line(
        run_tool('test.py', c['cfg'], c['other'], '--work-dir', work))
    assert line.startswith(f"error: checkpoint '{c['other']}' does not fit")
    # the student alone into the distiller config: loaded into its student;
    # the teacher file is not needed to evaluate
    proc = run_tool('test.py', c['cfg'], c['student'], '--work-dir', work,
                    '--cfg-options', 'model.teacher_ckpt=/missing/t.pth')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'student-only checkpoint: loaded into the distiller' in \
        proc.stdout + proc.stderr
    assert 'accuracy/top1' in proc.stdout + proc.stderr


@pytest.mark.slow
def test_extract_student_checks_its_input_and_writes_atomically(tools_case):
    c = tools_case
    out = str(c['tmp'] / 'extracted.pth')
    line = error_line(
        run_tool('model_converters/extract_student.py', str(c['tmp']), out))
    assert 'is a directory' in line
    line = error_line(
        run_tool('model_converters/extract_student.py', c['student'], out))
    assert 'no "student." weights' in line
    proc = run_tool('model_converters/extract_student.py', c['ckpt'], out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = torch.load(out, map_location='cpu')
    assert set(exported['state_dict']) == set(distiller().student.state_dict())
    assert not [n for n in os.listdir(c['tmp']) if n.endswith('.partial')]


@pytest.mark.slow
def test_last_batch_of_one_trains_the_epoch_and_saves(tools_case):
    c = tools_case
    work = str(c['tmp'] / 'batch_of_one')
    proc = run_tool('train.py', c['cfg'], '--work-dir', work,
                    '--cfg-options', 'model.warmup_epochs=0')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    assert 'a batch of one sample cannot be batch-normalised' in \
        proc.stdout + proc.stderr
    scalars = [
        json.loads(line) for root, _, files in os.walk(work)
        for name in files if name == 'scalars.json'
        for line in open(osp.join(root, name))
    ]
    assert [r['distill_weight'] for r in scalars if 'loss' in r] == \
        [1.0, 0.0]  # the batch of one has no distillation term


@pytest.mark.parametrize('config,root', [
    ('reviewkd/cifar100/reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py',
     '/data/my cifar100'),
    ('reviewkd/coco/reviewkd_faster-rcnn_r101_r18_fpn_4xb2-ms-180k_coco.py',
     '/data/coco2017'),
])
def test_one_data_root_setting_reaches_every_loader(config, root):
    from mmreviewkd.utils.config_check import apply_data_root
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))),
                    'configs', config)
    cfg = apply_data_root(load_config(path), {'data_root': root})
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[key].dataset
        while 'data_root' not in dataset:  # dataset wrappers
            dataset = dataset.dataset
        assert dataset.data_root == root, key
    evaluator = cfg.val_evaluator
    if isinstance(evaluator, dict) and 'ann_file' in evaluator:
        assert evaluator.ann_file.startswith(root + '/')
    # an explicit per-loader setting wins
    cfg = apply_data_root(
        load_config(path), {
            'data_root': root,
            'val_dataloader.dataset.data_root': '/elsewhere'
        })
    assert cfg.val_dataloader.dataset.data_root == '/elsewhere'
