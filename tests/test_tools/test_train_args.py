# Copyright (c) mmreviewkd contributors. All rights reserved.
import importlib.util
import os
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = load_tool('train')
test_tool = load_tool('test')


def base_cfg():
    return Config(
        dict(
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            auto_scale_lr=dict(base_batch_size=128),
            train_dataloader=dict(batch_size=2, persistent_workers=True),
            default_scope='mmpretrain',
            default_hooks=dict(
                visualization=dict(type='VisualizationHook', enable=False)),
            test_evaluator=dict(type='Accuracy')))


@pytest.fixture(autouse=True)
def clean_local_rank(monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)


@pytest.mark.parametrize('flag', ['--local_rank', '--local-rank'])
def test_both_local_rank_spellings(flag):
    args = train.parse_args(['cfg.py', f'{flag}=3'])
    assert args.local_rank == 3
    assert os.environ['LOCAL_RANK'] == '3'
    args = test_tool.parse_args(['cfg.py', 'ckpt.pth', flag, '2'])
    assert args.local_rank == 2


def test_local_rank_env_from_torchrun_wins(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '5')
    train.parse_args(['cfg.py', '--local-rank=1'])
    assert os.environ['LOCAL_RANK'] == '5'


def test_defaults_and_work_dir_precedence():
    args = train.parse_args(['configs/x/my_cfg.py'])
    assert args.launcher == 'none' and args.resume is None and not args.amp
    cfg = train.merge_args(base_cfg(), args)
    assert cfg.work_dir == osp.join('./work_dirs', 'my_cfg')
    assert cfg.launcher == 'none'
    cfg = base_cfg()
    cfg.work_dir = 'from_cfg'
    assert train.merge_args(cfg, args).work_dir == 'from_cfg'
    args = train.parse_args(['my_cfg.py', '--work-dir', 'cli'])
    assert train.merge_args(cfg, args).work_dir == 'cli'


def test_resume_with_and_without_path():
    cfg = train.merge_args(base_cfg(), train.parse_args(['c.py', '--resume']))
    assert cfg.resume is True and cfg.load_from is None
    cfg = train.merge_args(base_cfg(),
                           train.parse_args(['c.py', '--resume', 'a.pth']))
    assert cfg.resume is True and cfg.load_from == 'a.pth'
    cfg = train.merge_args(base_cfg(), train.parse_args(['c.py']))
    assert not cfg.get('resume', False)


def test_amp_picks_a_wrapper_for_the_device():
    import torch
    cfg = train.merge_args(base_cfg(), train.parse_args(['c.py', '--amp']))
    if torch.cuda.is_available():
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.loss_scale == 'dynamic'
    else:
        assert cfg.optim_wrapper.type == 'mmreviewkd.AutocastOptimWrapper'
        assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.optimizer.lr == 0.1


def test_auto_scale_lr_cfg_options_launcher(monkeypatch):
    # what srun sets (--launcher slurm without it is a one-line error)
    for name, value in (('SLURM_PROCID', '0'), ('SLURM_NTASKS', '1'),
                        ('SLURM_NODELIST', 'node1')):
        monkeypatch.setenv(name, value)
    args = train.parse_args([
        'c.py', '--auto-scale-lr', '--launcher', 'slurm', '--cfg-options',
        'optim_wrapper.optimizer.lr=0.5', 'train_dataloader.batch_size=7',
        '--no-persistent-workers'
    ])
    cfg = train.merge_args(base_cfg(), args)
    assert cfg.auto_scale_lr.enable is True
    assert cfg.launcher == 'slurm'
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.train_dataloader.batch_size == 7
    assert cfg.train_dataloader.persistent_workers is False
    cfg = base_cfg()
    cfg.pop('auto_scale_lr')
    with pytest.raises(ValueError, match='base_batch_size'):
        train.merge_args(cfg, args)


def test_bad_launcher_is_rejected():
    with pytest.raises(SystemExit):
        train.parse_args(['c.py', '--launcher', 'kubernetes'])


def test_test_tool_out_and_show_dir():
    args = test_tool.parse_args([
        'c.py', 'ckpt.pth', '--out', 'res.pkl', '--show-dir', 'vis',
        '--work-dir', 'wd'
    ])
    cfg = test_tool.merge_args(base_cfg(), args)
    assert cfg.load_from == 'ckpt.pth' and cfg.work_dir == 'wd'
    assert cfg.test_evaluator[-1] == dict(
        type='mmengine.DumpResults', out_file_path='res.pkl')
    assert cfg.default_hooks.visualization.enable is True
    assert cfg.default_hooks.visualization.out_dir == 'vis'
    det = base_cfg()
    det.default_scope = 'mmdet'
    cfg = test_tool.merge_args(det, args)
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == 'vis'
    with pytest.raises(ValueError, match='pkl'):
        test_tool.merge_args(
            base_cfg(), test_tool.parse_args(['c.py', 'k.pth', '--out',
                                              'x.json']))
