# Copyright (c) mmreviewkd contributors. All rights reserved.
"""What tools/train.py hands to MMEngine: its stock Runner (or the config's
``runner_type``), atomic checkpoints and the RNG hook for every config, and
the newest complete checkpoint for ``--resume``."""
import importlib.util
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from mmreviewkd.utils.checkpoint_io import (ATOMIC_BACKEND_ARGS,
                                            find_resume_checkpoint)
from mmreviewkd.utils.errors import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_train_tool():
    spec = importlib.util.spec_from_file_location(
        'runner_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = load_train_tool()


@RUNNERS.register_module(force=True)
class ProbeRunner(Runner):
    """A config's own runner_type."""


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('train_runner')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=8,
        num_test=8)
    config = tmp / 'tiny.py'
    config.write_text(tiny_distill_config(data))
    return str(config)


def prepared(config, tmp_path, *extra):
    from mmreviewkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    args = train.parse_args(
        [config, '--work-dir',
         str(tmp_path / 'work'), *extra])
    cfg = train.merge_args(Config.fromfile(config), args)
    return train.resolve_resume(train.add_crash_safety(cfg))


def test_configs_without_runner_type_get_mmengine_runner(
        tiny_config, tmp_path):
    runner = train.build_runner(prepared(tiny_config, tmp_path))
    assert type(runner) is Runner
    hooks = {type(h).__name__: h for h in runner.hooks}
    assert 'RNGStateHook' in hooks
    assert hooks['CheckpointHook'].backend_args == ATOMIC_BACKEND_ARGS


def test_runner_type_is_built_from_the_registry(tiny_config, tmp_path):
    cfg = prepared(tiny_config, tmp_path)
    cfg.runner_type = 'ProbeRunner'
    assert type(train.build_runner(cfg)) is ProbeRunner


def test_add_crash_safety_for_a_baseline_config():
    cfg = train.add_crash_safety(
        Config(
            dict(
                default_hooks=dict(
                    checkpoint=dict(type='CheckpointHook', interval=1)))))
    assert cfg.default_hooks.checkpoint.backend_args == ATOMIC_BACKEND_ARGS
    assert cfg.custom_hooks == [dict(type='mmreviewkd.RNGStateHook')]
    # once only; the config's own choices are kept
    cfg = train.add_crash_safety(cfg)
    assert len(cfg.custom_hooks) == 1
    for hook in (dict(type='CheckpointHook', out_dir='s3://bucket/ckpts'),
                 dict(type='CheckpointHook', backend_args=None)):
        cfg = train.add_crash_safety(
            Config(dict(default_hooks=dict(checkpoint=hook))))
        assert cfg.default_hooks.checkpoint.get('backend_args') is None


def save(path):
    torch.save(
        dict(meta=dict(epoch=1), state_dict={'w': torch.ones(64)}), path)


class ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(f'{record.levelname} {record.getMessage()}')


def test_find_resume_checkpoint_says_what_it_skips_and_removes(tmp_path):
    logger = logging.getLogger('find_resume_test')
    logger.setLevel(logging.INFO)
    handler = ListHandler()
    logger.addHandler(handler)
    save(tmp_path / 'epoch_1.pth')
    save(tmp_path / 'epoch_2.pth')
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    partial = tmp_path / '.epoch_3.pth.1.abcd.partial'
    partial.write_bytes(b'PK\x03\x04')
    assert find_resume_checkpoint(str(tmp_path), logger, remove_partial=False)
    assert partial.exists()  # only one process of a run removes them
    handler.lines.clear()
    path = find_resume_checkpoint(str(tmp_path), logger)
    assert path == str(tmp_path / 'epoch_1.pth')
    assert not partial.exists()
    assert handler.lines[0] == \
        f'INFO Removed {partial}, left by an interrupted save.'
    assert handler.lines[1].startswith(
        f'WARNING Resume: skipped incomplete checkpoint '
        f'{tmp_path / "epoch_2.pth"} (it is truncated or corrupt')
    assert handler.lines[1].endswith(
        f'; resuming from {path}, the last complete checkpoint.')


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    assert train.resolve_resume(cfg.copy()).resume is False  # from scratch

    save(work / 'epoch_1.pth')
    save(work / 'epoch_2.pth')
    data = (work / 'epoch_2.pth').read_bytes()
    (work / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    out = train.resolve_resume(cfg.copy())
    assert out.resume is True
    assert out.load_from == str(work / 'epoch_1.pth')

    (work / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='no complete checkpoint'):
        train.resolve_resume(cfg.copy())
    broken = Config(
        dict(
            work_dir=str(work),
            resume=True,
            load_from=str(work / 'epoch_2.pth')))
    with pytest.raises(CheckpointError, match='cannot resume from'):
        train.resolve_resume(broken)


def test_resume_follows_last_checkpoint_when_the_work_dir_has_none(tmp_path):
    work, out_dir = tmp_path / 'work', tmp_path / 'elsewhere'
    work.mkdir()
    out_dir.mkdir()
    save(out_dir / 'iter_10.pth')
    save(out_dir / 'iter_20.pth')
    (work / 'last_checkpoint').write_text(str(out_dir / 'iter_20.pth'))
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    assert train.resolve_resume(cfg).load_from == str(out_dir / 'iter_20.pth')
