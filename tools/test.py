# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Evaluate a checkpoint (distiller or plain student/teacher).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch|slurm]
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--show-dir', help='save visualised predictions into this dir')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--verbose-log',
        action='store_true',
        help="MMEngine's full log: environment report, config, hook table "
        '(also MMREVIEWKD_VERBOSE_LOG=1)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    cfg.launcher = args.launcher
    from mmreviewkd.utils.config_check import check_launcher
    check_launcher(args.launcher)
    # data_root=DIR reaches every dataloader (see apply_data_root)
    from mmreviewkd.utils.config_check import apply_data_root
    cfg = apply_data_root(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if args.show_dir:
        vis = cfg.default_hooks.get('visualization')
        if vis is None:
            from mmreviewkd.utils.errors import ConfigError
            raise ConfigError('--show-dir needs a `visualization` hook in '
                              'default_hooks.')
        if cfg.get('default_scope') == 'mmdet':  # DetVisualizationHook
            vis['draw'] = True
            vis['test_out_dir'] = args.show_dir
        else:  # mmpretrain VisualizationHook
            vis['enable'] = True
            vis['out_dir'] = args.show_dir

    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            from mmreviewkd.utils.errors import ConfigError
            raise ConfigError('--out must be a .pkl or .pickle file.')
        evaluator = cfg.test_evaluator
        evaluators = list(evaluator) if isinstance(evaluator,
                                                   (list,
                                                    tuple)) else [evaluator]
        evaluators.append(
            dict(type='mmengine.DumpResults', out_file_path=args.out))
        cfg.test_evaluator = evaluators
    return cfg


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)

    from mmengine.model import is_model_wrapper
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import mmreviewkd  # noqa: F401
    from mmreviewkd.utils import register_all_modules
    from mmreviewkd.utils.checkpoint_check import load_checked
    from mmreviewkd.utils.checkpoint_io import checkpoint_problem
    from mmreviewkd.utils.config_check import load_config
    from mmreviewkd.utils.distill_runtime import prepare_distill_runtime
    from mmreviewkd.utils.errors import CheckpointError
    register_all_modules(init_default_scope=False)

    if '://' not in args.checkpoint:
        problem = checkpoint_problem(args.checkpoint)
        if problem is not None:
            error = FileNotFoundError if 'exist' in problem else \
                CheckpointError
            raise error(
                f'checkpoint {args.checkpoint!r} cannot be used: {problem}.')
    # a distiller config comes with its runtime prepared (the student's EMA
    # averages the student only; see mmreviewkd.utils.distill_runtime)
    cfg = prepare_distill_runtime(merge_args(load_config(args.config), args))
    # The checkpoint is checked against the model and loaded strictly below,
    # not by the Runner (which loads non-strictly). A distiller's teacher
    # weights come from the checkpoint (or do not matter: evaluation uses
    # the student), so its teacher_ckpt file is not needed.
    cfg.load_from = None
    if isinstance(cfg.get('model'), dict) and 'teacher_ckpt' in cfg.model:
        cfg.model.teacher_ckpt = None
    from mmreviewkd.utils.run_log import apply_log_policy, readable_runner_log
    cfg = apply_log_policy(cfg, args.cfg_options, train=False)
    with readable_runner_log(cfg, args.verbose_log):  # compact env/config
        # MMEngine's Runner, unless the config names its own (like mmdet's)
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        load_checked(model, args.checkpoint, runner.logger)
        runner.test()


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
