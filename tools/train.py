# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Train a model (a ReviewKD distiller, a teacher or a baseline student).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CKPT]] [--cfg-options k=v ...] [--launcher pytorch|slurm]

MMEngine's ``Runner`` trains (or the config's ``runner_type``). A ReviewKD
config runs the student's runtime plus the distillation hooks
(:func:`~mmreviewkd.utils.distill_runtime.prepare_distill_runtime`, applied
when the config is loaded and again after ``--cfg-options``). Every config
gets atomic checkpoint writes and RNG states in its checkpoints
(:func:`add_crash_safety`); ``--resume`` without a path continues from the
newest complete checkpoint of the work dir (:func:`resolve_resume`).
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
        '--verbose-log',
        action='store_true',
        help="MMEngine's full log: environment report, config, hook table "
        '(also MMREVIEWKD_VERBOSE_LOG=1)')
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

    from mmreviewkd.utils.errors import ConfigError
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in ('AmpOptimWrapper', 'AutocastOptimWrapper',
                        'mmreviewkd.AutocastOptimWrapper'):
        return optim_wrapper
    if wrapper_type != 'OptimWrapper':
        raise ConfigError(f'--amp is only supported with OptimWrapper, but '
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
    from mmreviewkd.utils.config_check import check_launcher
    check_launcher(args.launcher)
    # data_root=DIR reaches every dataloader (see apply_data_root)
    from mmreviewkd.utils.config_check import apply_data_root
    cfg = apply_data_root(cfg, args.cfg_options)

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
        from mmreviewkd.utils.errors import ConfigError
        if 'auto_scale_lr' not in cfg or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ConfigError('--auto-scale-lr needs `auto_scale_lr = dict('
                              'base_batch_size=...)` in the config.')
        cfg.auto_scale_lr.enable = True

    if args.no_persistent_workers:
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(key) is not None:
                cfg[key]['persistent_workers'] = False
    return cfg


def add_crash_safety(cfg: Config) -> Config:
    """Atomic checkpoints and RNG states in checkpoints, for every config.

    - ``default_hooks.checkpoint`` without ``backend_args`` (and without the
      deprecated ``file_client_args``) saving to a local ``out_dir`` gets
      ``backend_args=dict(backend='mmreviewkd_atomic_local')``: temporary
      file, fsync, rename, so a kill during a save never leaves a truncated
      checkpoint. ``backend_args=None`` in the config keeps MMEngine's
      default backend.
    - ``custom_hooks`` without an ``RNGStateHook`` get
      ``mmreviewkd.RNGStateHook`` (ReviewKD configs have it among their
      distillation hooks; baselines and teachers get it here).
    """
    from mmreviewkd.utils.checkpoint_io import ATOMIC_BACKEND_ARGS, is_remote
    from mmreviewkd.utils.distill_runtime import add_custom_hook

    default_hooks = cfg.get('default_hooks') or {}
    ckpt_hook = default_hooks.get('checkpoint')
    if ckpt_hook is not None and 'backend_args' not in ckpt_hook \
            and 'file_client_args' not in ckpt_hook \
            and not is_remote(ckpt_hook.get('out_dir') or ''):
        ckpt_hook['backend_args'] = dict(ATOMIC_BACKEND_ARGS)

    add_custom_hook(cfg, dict(type='mmreviewkd.RNGStateHook'))
    return cfg


def _launcher_rank(launcher: str) -> int:
    """This process's global rank, before torch.distributed is set up."""
    env = {
        'pytorch': 'RANK',
        'slurm': 'SLURM_PROCID',
        'mpi': 'OMPI_COMM_WORLD_RANK'
    }.get(launcher)
    return int(os.environ.get(env, 0)) if env else 0


def resolve_resume(cfg: Config) -> Config:
    """Turn ``resume`` into the checkpoint MMEngine's Runner resumes from.

    ``resume=True`` without ``load_from`` (``--resume``) takes the newest
    complete checkpoint of the work dir (:func:`~mmreviewkd.utils.
    checkpoint_io.find_resume_checkpoint`: broken ones are skipped with a
    warning, ``.partial`` leftovers removed) or, when there is none, trains
    from scratch. An explicit local checkpoint that is broken is an error.

    Raises:
        CheckpointError: The checkpoint to resume from is broken, or all
            checkpoints of the work dir are.
    """
    from mmengine.logging import MMLogger

    from mmreviewkd.utils.checkpoint_io import (checkpoint_problem,
                                                find_resume_checkpoint,
                                                is_remote)
    from mmreviewkd.utils.errors import CheckpointError

    if not cfg.get('resume', False):
        return cfg
    load_from = cfg.get('load_from')
    if load_from is None:
        main = _launcher_rank(cfg.get('launcher', 'none')) == 0
        path = find_resume_checkpoint(
            cfg.work_dir,
            logger=MMLogger.get_current_instance() if main else None,
            remove_partial=main)
        if path is None:
            cfg.resume = False  # nothing to resume: train from scratch
        else:
            cfg.load_from = path
    elif not is_remote(load_from):
        problem = checkpoint_problem(load_from)
        if problem is not None:
            raise CheckpointError(
                f'cannot resume from {load_from!r}: {problem}. Pass a '
                f'complete checkpoint, or --resume without a path to use '
                f'the last complete one in the work dir.')
    return cfg


def read_checkpoint_to_load(cfg: Config) -> Optional[dict]:
    """Read ``load_from`` (safely) before the Runner is built.

    A student-only checkpoint given as ``load_from`` to a distiller config
    is taken out of ``load_from``: :func:`check_checkpoint_to_load` makes it
    the student's ``init_cfg`` instead (MMEngine would load it non-strictly
    into the whole distiller, i.e. not at all).
    """
    from mmreviewkd.utils.checkpoint_check import (STUDENT, read_checkpoint,
                                                   state_of)
    from mmreviewkd.utils.checkpoint_io import is_remote

    path = cfg.get('load_from')
    if path is None or is_remote(path):
        return None
    what = 'the checkpoint to resume from' if cfg.get('resume') \
        else 'load_from'
    ckpt = read_checkpoint(path, what)
    model_type = str((cfg.get('model') or {}).get('type', ''))
    if not cfg.get('resume') and model_type.endswith('ReviewKDDistiller') \
            and not any(k.startswith(STUDENT) for k in state_of(ckpt)):
        cfg.load_from = None
    return dict(path=path, ckpt=ckpt)


def check_checkpoint_to_load(runner, cfg: Config,
                             loaded: Optional[dict]) -> None:
    """Check the checkpoint read by :func:`read_checkpoint_to_load` against
    the built model before training starts: one to resume from must be a
    training checkpoint of this model, one to load must fit the model key
    by key (a student-only one: the distiller's student)."""
    from mmengine.model import is_model_wrapper

    from mmreviewkd.utils.checkpoint_check import (check_resume_checkpoint,
                                                   fit_checkpoint)
    if loaded is None:
        return
    path = loaded['path']
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    if cfg.get('resume', False):
        check_resume_checkpoint(model, path, loaded['ckpt'])
        return
    target, _, note = fit_checkpoint(model, loaded['ckpt'], path)
    if target is not model:  # student-only: loaded when weights are set
        target.init_cfg = dict(type='Pretrained', checkpoint=path)
    runner.logger.info(note or f'load_from {path}: all keys match the '
                       f'model.')


def build_runner(cfg: Config):
    """MMEngine's ``Runner``, or the config's ``runner_type``."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)

    import mmreviewkd  # noqa: F401  (version check, checkpoint allow-list)
    from mmreviewkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    from mmreviewkd.utils.config_check import load_config
    from mmreviewkd.utils.distill_runtime import prepare_distill_runtime
    cfg = load_config(args.config)  # prepares a distiller config's runtime
    cfg = merge_args(cfg, args)
    # again after --cfg-options (idempotent): custom_hooks=[...] on the
    # command line keeps the distillation hooks and the teacher-free EMA
    cfg = prepare_distill_runtime(cfg)
    cfg = add_crash_safety(cfg)
    from mmreviewkd.utils.run_log import apply_log_policy, readable_runner_log
    cfg = apply_log_policy(cfg, args.cfg_options, verbose=args.verbose_log)
    from mmreviewkd.datasets.worker_init import add_worker_seed_hook
    cfg = add_worker_seed_hook(cfg)  # exact resume with DataLoader workers
    cfg = resolve_resume(cfg)

    loaded = read_checkpoint_to_load(cfg)
    with readable_runner_log(cfg, args.verbose_log):  # compact env/config
        runner = build_runner(cfg)
        check_checkpoint_to_load(runner, cfg, loaded)
        del loaded
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
