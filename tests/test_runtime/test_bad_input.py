# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Bad input gives one clear line: through ``tools/train.py`` /
``tools/test.py`` a non-zero exit with a single ``error: ...`` line on stderr
and no traceback (``MMREVIEWKD_DEBUG=1`` shows it); in Python a one-line
exception."""
import io
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import run_tool
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.connectors import ABFConnector
from mmreviewkd.models.losses import HCLLoss
from mmreviewkd.utils.cli_errors import format_error, run_cli
from mmreviewkd.utils.errors import ConfigError

IMAGE_CONFIG = '''
_base_ = ['mmpretrain::_base_/default_runtime.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarResNet', depth=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=2, mean=[128.] * 3, std=[64.] * 3)
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=r'{root}',
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='Resize', scale=(32, 32)),
                           dict(type='PackInputs')]))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(by_epoch=True, max_epochs=1)
'''


def classifier(depth, backbone='CifarResNet', in_channels=64):
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type=f'mmreviewkd.{backbone}', depth=depth),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=10,
            in_channels=in_channels,
            loss=dict(type='mmpretrain.CrossEntropyLoss')))


def build(**kwargs):
    cfg = dict(
        student=classifier(8),
        teacher=classifier(14),
        data_preprocessor=dict(
            type='mmpretrain.ClsDataPreprocessor', num_classes=10),
        teacher_feats=dict(preact=True))
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(**cfg)


def truncated_copy(src, dst):
    data = open(src, 'rb').read()
    with open(dst, 'wb') as f:
        f.write(data[:len(data) // 3])
    return str(dst)


@pytest.fixture(scope='module')
def cli_results(tmp_path_factory):
    """Run every CLI case (two at a time) and keep the results."""
    tmp = tmp_path_factory.mktemp('bad_input')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=16,
        num_test=8)
    tiny = tmp / 'tiny.py'
    tiny.write_text(tiny_distill_config(data, max_epochs=1))
    tiny = str(tiny)

    model = build()
    teacher_ckpt = tmp / 'teacher_r14.pth'
    torch.save(dict(state_dict=model.teacher.state_dict()), teacher_ckpt)
    other_arch = tmp / 'student_r8.pth'  # a checkpoint of another model
    torch.save(dict(state_dict=model.student.state_dict()), other_arch)
    truncated = truncated_copy(teacher_ckpt, tmp / 'truncated.pth')

    import cv2
    for cls in ('cat', 'dog'):
        (tmp / 'images' / cls).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(
                str(tmp / 'images' / cls / f'{i}.jpg'),
                np.random.RandomState(i).randint(0, 255,
                                                 (40, 40, 3)).astype(np.uint8))
    broken = tmp / 'images' / 'dog' / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8\xff\xe0' + b'not a jpeg' * 10)
    image_cfg = tmp / 'images.py'
    image_cfg.write_text(IMAGE_CONFIG.format(root=tmp / 'images'))
    bad_base = tmp / 'bad_base.py'
    bad_base.write_text("_base_ = ['mmdet::nonexistent_dir/nothing.py']\n")

    work = str(tmp / 'work')
    opt = '--cfg-options'
    cases = {
        'missing_teacher_ckpt':
        (('train.py', tiny, opt, 'model.teacher_ckpt=/nonexistent/t.pth'),
         ["teacher_ckpt '/nonexistent/t.pth' does not exist"]),
        'teacher_of_another_architecture':
        (('train.py', tiny, opt, f'model.teacher_ckpt={other_arch}'), [
            str(other_arch), 'does not match the teacher model',
            'missing keys: backbone.layer1.1'
        ]),
        'truncated_teacher_ckpt':
        (('train.py', tiny, opt, f'model.teacher_ckpt={truncated}'),
         [f'cannot read teacher_ckpt {truncated!r}', 'truncated']),
        'connector_channels_contradict_models':
        (('train.py', tiny, opt, 'model.connector.in_channels=[16,32,64,32]'),
         [
             'connector in_channels=[16, 32, 64, 32] contradicts the student '
             'features [16, 32, 64, 64]'
         ]),
        'unknown_component_type':
        (('train.py', tiny, opt, 'model.connector.type=ABFConnectr'),
         ['ABFConnectr is not in the mmreviewkd::model registry']),
        'missing_dataset_path':
        (('train.py', tiny, opt,
          'train_dataloader.dataset.data_root=/nonexistent/cifar'),
         ['CIFAR-100 files', "not found in '/nonexistent/cifar"]),
        'corrupt_image_in_dataset': (('train.py', str(image_cfg)),
                                     [f'failed to load image: {broken}']),
        'missing_mmdet_base': (('train.py', str(bad_base)), [
            'could not be loaded', 'nonexistent_dir/nothing.py',
            'does not exist'
        ]),
        'missing_config_file': (('train.py', '/nonexistent/config.py'), [
            "config file '/nonexistent/config.py' does not exist"
        ]),
        'truncated_resume_checkpoint':
        (('train.py', tiny, '--resume', truncated),
         [f'cannot resume from {truncated!r}', 'truncated or corrupt']),
        'truncated_checkpoint_for_test': (('test.py', tiny, truncated), [
            f'checkpoint {truncated!r} cannot be used', 'truncated or '
            'corrupt'
        ]),
        'missing_checkpoint_for_test':
        (('test.py', tiny, '/nonexistent/epoch_9.pth'), [
            "checkpoint '/nonexistent/epoch_9.pth' cannot be used: it does "
            'not exist'
        ]),
    }

    assert sorted(cases) == sorted(CLI_CASES)

    def run(item):
        name, (args, _) = item
        # a work dir of its own (and never ./work_dirs)
        args = args + ('--work-dir', osp.join(work, name))
        return name, run_tool(*args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(pool.map(run, cases.items()))
    debug = run_tool(
        'train.py',
        '/nonexistent/config.py',
        '--work-dir',
        osp.join(work, 'debug'),
        env=dict(MMREVIEWKD_DEBUG='1'))
    return dict(cases=cases, procs=procs, debug=debug)


CLI_CASES = [
    'missing_teacher_ckpt', 'teacher_of_another_architecture',
    'truncated_teacher_ckpt', 'connector_channels_contradict_models',
    'unknown_component_type', 'missing_dataset_path',
    'corrupt_image_in_dataset', 'missing_mmdet_base', 'missing_config_file',
    'truncated_resume_checkpoint', 'truncated_checkpoint_for_test',
    'missing_checkpoint_for_test'
]


@pytest.mark.slow
@pytest.mark.parametrize('name', CLI_CASES)
def test_cli_reports_one_error_line(cli_results, name):
    proc = cli_results['procs'][name]
    expected = cli_results['cases'][name][1]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith('error:')]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-2000:]
    for fragment in expected:
        assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_cli_debug_env_shows_the_traceback(cli_results):
    proc = cli_results['debug']
    assert proc.returncode != 0
    assert 'Traceback' in proc.stderr
    assert "config file '/nonexistent/config.py' does not exist" in \
        proc.stderr


# ------------------------------------------------------------- in-process
@pytest.mark.parametrize('kwargs,error,match', [
    (dict(
        student_feats=dict(points=[
            'backbone.layer1.0', 'backbone.layer1', 'backbone.layer2',
            'backbone.layer3'
        ])), ValueError, r'the student gives 5 feature levels but the teacher '
     r'4, and pairing them by stride .* fails \(s1: 2 student and 1 teacher'),
    (dict(
        student=classifier(8, 'CifarVGG', 512),
        teacher=classifier(13, 'CifarVGG', 512),
        teacher_feats=dict(preact=False),
        infer_input_shape=(3, 4, 4)), ConfigError,
     r'the student failed a dummy forward of shape \(1, 3, 4, 4\) .*Output '
     'size is too small.*set infer_input_shape'),
    (dict(loss_weight=-0.5), ValueError, 'loss_weight must be >= 0'),
    (dict(warmup_epochs=-3), ValueError, 'warmup_epochs must be >= 0, got -3'),
    (dict(distill_loss=dict(type='HCLLoss', pool_sizes=(4, 0))), ValueError,
     'pool_sizes must be positive'),
    (dict(connector=dict(type='NoSuchConnector')), KeyError,
     'NoSuchConnector is not in the mmreviewkd::model registry'),
    (dict(teacher=dict(type='mmpretrain.ImageClassifer')), KeyError,
     'cannot build the teacher'),
])
def test_distiller_rejects_bad_arguments_in_one_line(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        build(**kwargs)
    assert '\n' not in format_error(info.value)


def test_teacher_checkpoint_without_weights(tmp_path):
    path = tmp_path / 'not_weights.pth'
    torch.save([1, 2, 3], path)
    with pytest.raises(RuntimeError, match='holds no state dict'):
        build(teacher_ckpt=str(path))


def test_empty_dataset_folders(tmp_path):
    from mmpretrain.datasets import CustomDataset

    from mmreviewkd.datasets import CIFAR100
    (tmp_path / 'empty').mkdir()
    with pytest.raises(
            FileNotFoundError,
            match='CIFAR-100 files .* not found in') as info:
        CIFAR100(data_root=str(tmp_path / 'empty'), verify_md5=False)
    assert '\n' not in str(info.value)
    with pytest.raises(RuntimeError, match='Found 0 files in subfolders'):
        CustomDataset(data_root=str(tmp_path / 'empty'))


def test_connector_and_loss_arguments():
    with pytest.raises(ValueError, match='equal length'):
        ABFConnector([16, 32], [16])
    with pytest.raises(ValueError, match='must be positive'):
        ABFConnector([16, 0], [16, 32])
    with pytest.raises(ValueError, match='loss_weight must be >= 0'):
        HCLLoss(loss_weight=-1)


# -------------------------------------------------------- error formatting
def test_format_error_gives_one_clean_line():
    assert format_error(KeyError('Foo is not in the model registry')) == \
        'Foo is not in the model registry'
    built = ConfigError('class `ReviewKDDistiller` in mmreviewkd/models/'
                        'distillers/review_kd.py: ReviewKDDistiller: bad')
    assert format_error(built) == 'ReviewKDDistiller: bad'
    worker = AssertionError(
        'Caught AssertionError in DataLoader worker process 0.\nOriginal '
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        '    assert img is not None\nAssertionError: failed to load image: '
        '/data/b.jpg\n')
    assert format_error(worker) == \
        'AssertionError: failed to load image: /data/b.jpg'
    assert format_error(ConfigError('first line\nsecond line')) == \
        'first line'
    assert format_error(RuntimeError('first line\nsecond line')) == \
        'RuntimeError: first line'
    assert format_error(ZeroDivisionError('division by zero')) == \
        'ZeroDivisionError: division by zero'


def test_run_cli_exit_codes(monkeypatch):
    monkeypatch.delenv('MMREVIEWKD_DEBUG', raising=False)
    stderr = io.StringIO()
    assert run_cli(lambda: None, stderr=stderr) == 0

    def fail():
        raise FileNotFoundError('config file x.py does not exist.')

    assert run_cli(fail, stderr=stderr) == 1
    assert stderr.getvalue() == 'error: config file x.py does not exist.\n'
    monkeypatch.setenv('MMREVIEWKD_DEBUG', '1')
    with pytest.raises(FileNotFoundError):
        run_cli(fail, stderr=stderr)


def test_run_cli_keeps_the_traceback_of_an_internal_error(monkeypatch):
    """A bug (or a NCCL / out-of-memory failure) is not bad input: its
    traceback is printed, then one summary line; bad input stays one
    line."""
    monkeypatch.delenv('MMREVIEWKD_DEBUG', raising=False)

    def buggy_step():
        raise RuntimeError('NCCL error: unhandled system error')

    stderr = io.StringIO()
    assert run_cli(buggy_step, stderr=stderr) == 1
    text = stderr.getvalue()
    assert text.startswith('Traceback (most recent call last):')
    assert 'in buggy_step' in text
    assert text.strip().splitlines()[-1] == \
        'error: RuntimeError: NCCL error: unhandled system error'
    for bug in (KeyError('student'), TypeError('bad operand'),
                AssertionError('shape mismatch')):
        stderr = io.StringIO()

        def fail(bug=bug):
            raise bug

        assert run_cli(fail, stderr=stderr) == 1
        assert 'Traceback' in stderr.getvalue()

    def bad_setting():
        raise ConfigError('loss_weight must be >= 0; fix the config.')

    stderr = io.StringIO()
    assert run_cli(bad_setting, stderr=stderr) == 1
    assert stderr.getvalue() == \
        'error: loss_weight must be >= 0; fix the config.\n'
