# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Train a model (a ReviewKD distiller, a teacher or a baseline student).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options k=v ...] [--launcher pytorch|slurm]
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, resume from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: fp16 AmpOptimWrapper on GPU, bf16 autocast '
        'on CPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by (total batch size / auto_scale_lr.base_'
        'batch_size)')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='turn persistent_workers off in all dataloaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'model.loss_weight=1.0 train_dataloader.batch_size=64')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local_rank, torchrun --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _amp_wrapper(optim_wrapper: dict) -> dict:
    import torch
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in ('AmpOptimWrapper', 'AutocastOptimWrapper',
                        'mmreviewkd.AutocastOptimWrapper'):
        return optim_wrapper
    if wrapper_type != 'OptimWrapper':
        raise ValueError(f'--amp is only supported with OptimWrapper, but '
                         f'the config uses {wrapper_type}; set the AMP '
                         f'wrapper in the config instead.')
    if torch.cuda.is_available():
        optim_wrapper['type'] = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        optim_wrapper['type'] = 'mmreviewkd.AutocastOptimWrapper'
        optim_wrapper.setdefault('dtype', 'bfloat16')
        optim_wrapper.setdefault('device_type', 'cpu')
    return optim_wrapper


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge the command line into the config (OpenMMLab semantics)."""
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        cfg.optim_wrapper = _amp_wrapper(cfg.optim_wrapper)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError('--auto-scale-lr needs `auto_scale_lr = dict('
                             'base_batch_size=...)` in the config.')
        cfg.auto_scale_lr.enable = True

    if args.no_persistent_workers:
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(key) is not None:
                cfg[key]['persistent_workers'] = False
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)

    import mmreviewkd  # noqa: F401  (version check, checkpoint allow-list)
    from mmreviewkd.engine import ReviewKDRunner
    from mmreviewkd.registry import RUNNERS
    from mmreviewkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    from mmreviewkd.utils.config_check import load_config
    cfg = load_config(args.config)
    cfg = merge_args(cfg, args)

    # ReviewKDRunner: atomic checkpoints, resume from the last complete one,
    # RNG states in checkpoints, distributed runs on CPU (gloo)
    if 'runner_type' not in cfg:
        runner = ReviewKDRunner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()


def cli() -> int:
    """Run :func:`main`; errors end in one ``error:`` line on stderr
    (``MMREVIEWKD_DEBUG=1`` shows the traceback)."""
    try:
        from mmreviewkd.utils.cli_errors import run_cli
    except RuntimeError as e:  # `import mmreviewkd` checks dependency versions
        print(f'error: {e}', file=sys.stderr)
        return 1
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
