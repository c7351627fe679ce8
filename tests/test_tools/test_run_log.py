# Copyright (c) mmreviewkd contributors. All rights reserved.
"""A log a person reads: compact environment / config / hooks records,
progress at least every 10 % of an epoch, a line before slow steps, one
warning for a teacher at chance level; ``--verbose-log`` gives MMEngine's
full output back."""
import glob
import logging
import os.path as osp
import re
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from mmengine.hooks import LoggerHook

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import run_tool
from mmreviewkd.engine.hooks import ProgressLogHook, TeacherEvalHook
from mmreviewkd.utils import run_log
from mmreviewkd.utils.errors import ConfigError

ENV_MESSAGE = ('\n' + '-' * 60 + '\nSystem environment:\n'
               '    sys.platform: linux\n'
               '    PyTorch compiling details: PyTorch built with:\n'
               '  - Build settings: ' + 'X' * 2000 + '\n\n'
               'Runtime environment:\n'
               '    cudnn_benchmark: False\n'
               '    seed: 42\n'
               '    deterministic: True\n'
               '    Distributed launcher: pytorch\n'
               '    Distributed training: True\n'
               '    GPU number: 8\n' + '-' * 60 + '\n')

HOOKS_MESSAGE = '''Hooks will be executed in the following order:
before_run:
(VERY_HIGH   ) RuntimeInfoHook
(BELOW_NORMAL) LoggerHook
 --------------------
before_train:
(VERY_HIGH   ) RuntimeInfoHook
(LOW         ) TeacherEvalHook
(12          ) MyHook
(VERY_LOW    ) CheckpointHook
 -------------------- '''


def record(msg, level=logging.INFO, name='mmengine'):
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


@pytest.fixture(autouse=True)
def no_verbose_env(monkeypatch):
    monkeypatch.delenv(run_log.VERBOSE_ENV, raising=False)


def test_environment_is_one_line_per_package():
    rec = record(ENV_MESSAGE)
    run_log.rewrite_record(rec)
    lines = rec.msg.splitlines()
    assert lines[0].startswith('Environment (full report: --verbose-log')
    names = [line.split()[0] for line in lines[1:]]
    for package in ('python', 'torch', 'torchvision', 'mmcv', 'mmengine',
                    'mmpretrain', 'mmreviewkd', 'runtime:'):
        assert package in names, lines
    assert names.count('torch') == 1
    assert max(len(line) for line in lines) < 120
    assert lines[-1] == ('    runtime: seed: 42, deterministic: True, '
                         'Distributed launcher: pytorch, world size: 8')
    torch_line = next(line for line in lines if line.split()[0] == 'torch')
    assert 'CPU only' in torch_line or 'CUDA' in torch_line


def test_config_and_hooks_become_one_line_each(tmp_path):
    (tmp_path / 'my_cfg.py').write_text('x = 1\n')
    cfg = Config(
        dict(work_dir=str(tmp_path / 'wd')),
        filename=str(tmp_path / 'my_cfg.py'))
    rec = record('Config:\nmodel = dict(\n    type="X")\n' * 50)
    run_log.rewrite_record(rec, cfg)
    assert rec.msg == (f'Config: the full config is written to '
                       f'{tmp_path / "wd" / "my_cfg.py"} (--verbose-log '
                       f'prints it here)')
    rec = record(HOOKS_MESSAGE)
    run_log.rewrite_record(rec)
    assert rec.msg == ('Hooks (by priority): RuntimeInfoHook, MyHook, '
                       'LoggerHook, TeacherEvalHook, CheckpointHook')


def test_only_mmengine_records_and_known_warnings_are_touched():
    other = record('Config:\nx = 1', name='somebody')
    run_log.rewrite_record(other)
    assert other.msg == 'Config:\nx = 1'
    warning = record(
        '"FileClient" will be deprecated in future. Please use io '
        'functions', logging.WARNING)
    run_log.rewrite_record(warning)
    assert warning.levelno == logging.DEBUG
    real = record('something else is wrong', logging.WARNING)
    run_log.rewrite_record(real)
    assert real.levelno == logging.WARNING


def test_context_manager_installs_and_restores_the_factory(monkeypatch):
    before = logging.getLogRecordFactory()
    logger = logging.getLogger('mmengine_run_log_test')
    with run_log.readable_runner_log():
        assert logging.getLogRecordFactory() is not before
        rec = logger.makeRecord('mmengine', logging.INFO, __file__, 1,
                                HOOKS_MESSAGE, None, None)
        assert rec.msg.startswith('Hooks (by priority):')
    assert logging.getLogRecordFactory() is before
    monkeypatch.setenv(run_log.VERBOSE_ENV, '1')
    with run_log.readable_runner_log():
        assert logging.getLogRecordFactory() is before
    with run_log.readable_runner_log(verbose=True):
        assert logging.getLogRecordFactory() is before


def test_apply_log_policy_cpu_pin_memory_and_progress_hook(monkeypatch):
    monkeypatch.setattr(run_log, '_accelerator_available', lambda: False)
    cfg = Config(
        dict(
            train_dataloader=dict(pin_memory=True),
            val_dataloader=dict(pin_memory=False),
            custom_hooks=[dict(type='mmreviewkd.RNGStateHook')]))
    run_log.apply_log_policy(cfg, None)
    assert cfg.train_dataloader.pin_memory is False
    assert cfg.custom_hooks[1:] == [
        dict(type='mmreviewkd.ProgressLogHook'),
        dict(type='mmreviewkd.ParamInitLogHook')
    ]
    run_log.apply_log_policy(cfg, None)  # idempotent
    assert len(cfg.custom_hooks) == 3

    cfg = Config(dict(train_dataloader=dict(pin_memory=True)))
    run_log.apply_log_policy(
        cfg, {'default_hooks.logger.interval': 50}, verbose=True)
    assert cfg.custom_hooks == [
        dict(type='mmreviewkd.ProgressLogHook', adjust_interval=False)
    ]
    cfg = Config(dict(test_dataloader=dict(pin_memory=True)))
    run_log.apply_log_policy(cfg, None, train=False)
    assert 'custom_hooks' not in cfg
    assert cfg.test_dataloader.pin_memory is False

    monkeypatch.setattr(run_log, '_accelerator_available', lambda: True)
    cfg = Config(dict(train_dataloader=dict(pin_memory=True)))
    run_log.apply_log_policy(cfg, None)
    assert cfg.train_dataloader.pin_memory is True


def test_init_info_dump_goes_to_its_own_file(tmp_path):
    logger = logging.getLogger('run_log_divert_test')
    logger.propagate = False
    handler = logging.FileHandler(str(tmp_path / 'run.log'))
    logger.addHandler(handler)
    try:
        restore = run_log.divert_init_info(logger, str(tmp_path / 'init.log'))
        logger.warning('before')
        handler.stream.write(run_log.INIT_INFO_HEADER)
        handler.stream.write('\nw - torch.Size([2]): \nsame \n')
        handler.stream.flush()
        logger.warning('after')
        assert restore() is True
        assert not isinstance(handler.stream, run_log.InitInfoDivert)
        logger.warning('restored')
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / 'run.log').read_text() == 'before\nafter\nrestored\n'
    assert (tmp_path / 'init.log').read_text() == (
        run_log.INIT_INFO_HEADER + '\nw - torch.Size([2]): \nsame \n')


class _Logger:

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(msg)

    warning = info


def _runner(iters, interval):
    return SimpleNamespace(
        hooks=[LoggerHook(interval=interval)],
        train_dataloader=list(range(iters)),
        logger=_Logger(),
        epoch=0,
        iter=0)


@pytest.mark.parametrize('iters,interval,expected', [(20, 100, 2), (5, 100, 1),
                                                     (1000, 50, 50),
                                                     (1000, 100, 100),
                                                     (1001, 150, 100)])
def test_progress_hook_lowers_the_interval_only(iters, interval, expected):
    runner = _runner(iters, interval)
    hook = ProgressLogHook()
    hook.before_train(runner)
    assert runner.hooks[0].interval == expected
    assert bool(runner.logger.lines) == (expected != interval)
    hook.before_train_epoch(runner)
    hook.before_train_epoch(runner)
    assert sum('First training iteration' in line
               for line in runner.logger.lines) == 1


def test_progress_hook_keeps_a_user_interval():
    runner = _runner(20, 100)
    ProgressLogHook(adjust_interval=False).before_train(runner)
    assert runner.hooks[0].interval == 100
    with pytest.raises(ConfigError, match='min_lines_per_epoch'):
        ProgressLogHook(min_lines_per_epoch=0)


def test_teacher_metric_checks():
    hook = TeacherEvalHook()
    assert 'chance level for 100 classes' in hook.check_metrics(
        {'accuracy/top1': 1.2}, 100)
    assert hook.check_metrics({'accuracy/top1': 1.6}, 100) is None
    assert hook.check_metrics({'accuracy/top1': 1.2}, None) is None
    assert hook.check_metrics({
        'coco/bbox_mAP': 0.0,
        'coco/bbox_mAP_50': 0.0
    }) == 'coco/bbox_mAP is 0'
    assert hook.check_metrics({'coco/bbox_mAP': 0.01}) is None
    floor = TeacherEvalHook(min_metric=70.0)
    assert 'below min_metric 70.0' in floor.check_metrics(
        {'accuracy/top1': 65.0}, 100)
    assert floor.check_metrics({'accuracy/top1': 72.0}, 100) is None
    ap = TeacherEvalHook(min_metric=0.3, metric='coco/segm_mAP')
    assert 'coco/segm_mAP 0.2000' in ap.check_metrics({
        'coco/bbox_mAP': 0.4,
        'coco/segm_mAP': 0.2
    })


def _log_lines(work_dir):
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        return f.read().splitlines()


@pytest.fixture(scope='module')
def default_run(tmp_path_factory):
    """tools/train.py on a tiny CIFAR-style config with the logger settings
    of mmpretrain's default runtime (interval 100): 20 iterations per
    epoch, 2 epochs, a random teacher."""
    tmp = tmp_path_factory.mktemp('run_log')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=160,
        num_test=16)
    text = tiny_distill_config(data, max_epochs=2)
    own_logger = ("default_hooks = dict(\n"
                  "    logger=dict(type='LoggerHook', interval=1),\n"
                  "    checkpoint=dict(type='CheckpointHook', interval=1))")
    assert own_logger in text and 'log_processor = dict(window_size=1)' \
        in text
    text = text.replace(
        own_logger,
        "default_hooks = dict(checkpoint=dict(type='CheckpointHook', "
        'interval=1))').replace('log_processor = dict(window_size=1)', '')
    config = tmp / 'tiny_default_log.py'
    config.write_text(text)
    work_dir = str(tmp / 'work')
    proc = run_tool('train.py', str(config), '--work-dir', work_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(proc=proc, work_dir=work_dir, config=str(config))


@pytest.mark.slow
def test_default_cpu_run_log_is_short_and_shows_progress(default_run):
    lines = _log_lines(default_run['work_dir'])
    first = next(i for i, line in enumerate(lines) if 'Epoch(train)' in line)
    assert first < 40, '\n'.join(lines[:first + 1])
    head = lines[:first]
    # no multi-kilobyte environment line, no config dump, no hook table
    # (the one-line hook list is the longest: ~300 characters)
    assert max(len(line) for line in head) < 500
    text = '\n'.join(head)
    assert 'System environment' not in text and 'before_train:' not in text
    config_line = next(line for line in head if 'Config: the full' in line)
    dumped = re.search(r'written to (\S+)', config_line).group(1)
    assert osp.isfile(dumped)
    assert 'Evaluating the teacher on 16 val samples ...' in text
    assert 'First training iteration' in text
    # the teacher is random: one warning line, at chance level
    warnings = [line for line in lines if ' WARNING ' in line]
    assert len(warnings) == 1 and 'chance level for 10 classes' in \
        warnings[0] and 'teacher_ckpt' in warnings[0], warnings
    # progress with ETA at least every 10 % of an epoch
    for epoch in (1, 2):
        progress = [
            line for line in lines
            if f'Epoch(train) [{epoch}]' in line and 'eta:' in line
        ]
        assert len(progress) >= 10, progress
    out = default_run['proc'].stdout + default_run['proc'].stderr
    assert 'FileClient' not in out and 'pin_memory' not in out
    assert not any('init_weights' in line for line in lines)
    init_line = next(line for line in head if 'initialisation details' in line)
    assert 'init_weights' in open(init_line.split(': ')[-1]).read()


@pytest.mark.slow
def test_verbose_log_and_test_tool(default_run, tmp_path):
    ckpt = osp.join(default_run['work_dir'], 'epoch_1.pth')
    quiet = run_tool('test.py', default_run['config'], ckpt, '--work-dir',
                     str(tmp_path / 'quiet'))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    lines = _log_lines(str(tmp_path / 'quiet'))
    assert max(len(line) for line in lines) < 300
    assert any('Environment (full report' in line for line in lines)
    assert any('Epoch(test)' in line for line in lines)

    verbose = run_tool('test.py', default_run['config'], ckpt, '--work-dir',
                       str(tmp_path / 'verbose'), '--verbose-log')
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    text = '\n'.join(_log_lines(str(tmp_path / 'verbose')))
    assert 'System environment:' in text and 'Config:\n' in text
    assert 'Hooks will be executed in the following order' in text
