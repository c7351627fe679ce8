# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Results table over seeds: train what is missing, collect, compare.

    python tools/analysis/results_table.py PLAN.py --work-dir ROOT
        [--seeds 0 1 2] [--run [--dry-run]] [--metric accuracy/top1]
        [--out table.md] [-- extra tools/train.py args]

PLAN.py defines ``rows = [dict(name=..., config=..., cfg_options={...},
paper=..., matrix=(i, j)), ...]`` and optionally ``title``, ``baseline``
(a row name or ``dict(name=..., paper=...)``) and ``seeds`` (see
:mod:`mmreviewkd.analysis.results`). With ``--run``, every (row, seed)
without a finished run is trained, one after another, with ``python
tools/train.py CONFIG --work-dir ROOT/<row>/seed<k> --resume --cfg-options
randomness.seed=k <row cfg_options> <extra args>`` (output in
``ROOT/<row>/seed<k>/train.log``); a failed run is reported, the others
still run, and the tool exits with 1 at the end. The table (Markdown, to
``--out`` and stdout; default ``ROOT/results.md``) and a JSON next to it
hold, per row, the mean, the sample std, min-max, n and per-seed values of
the metric at each run's last evaluation (the final epoch, never the best),
the paper's number and the difference. Missing runs are listed.
"""
import argparse
import os.path as osp
import shlex
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: List[str] = []
    if '--' in argv:
        cut = argv.index('--')
        argv, train_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog='arguments after -- go to every tools/train.py run, e.g. -- '
        '--amp --cfg-options train_dataloader.batch_size=128')
    parser.add_argument('plan', help='a plan file (Python) defining rows')
    parser.add_argument(
        '--work-dir',
        required=True,
        help='root of the runs: ROOT/<row>/seed<k>')
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=None,
        help="seeds (default: the plan's `seeds`, else 0 1 2)")
    parser.add_argument(
        '--run',
        action='store_true',
        help='train every (row, seed) without a finished run first')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='with --run: print the training commands, run nothing')
    parser.add_argument(
        '--metric',
        default='accuracy/top1',
        help='validation metric key of the json logs (e.g. coco/bbox_mAP)')
    parser.add_argument(
        '--scale',
        type=float,
        default=1.0,
        help='multiply the logged values (e.g. 100 for COCO mAPs, logged as '
        'fractions, against the paper\'s AP in %%)')
    parser.add_argument(
        '--out',
        default=None,
        help='Markdown file (default ROOT/results.md); the JSON goes next '
        'to it (same name, .json)')
    args = parser.parse_args(argv)
    args.train_args = train_args
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import mmreviewkd  # noqa: F401  (version check)
    from mmreviewkd.analysis.results import (DEFAULT_SEEDS, collect, load_plan,
                                             run_dir, runs_to_train,
                                             to_markdown, train_command,
                                             train_missing, write_results)
    plan = load_plan(args.plan)
    seeds = args.seeds or plan.seeds or list(DEFAULT_SEEDS)
    root = osp.abspath(args.work_dir)
    failed = {}
    if args.run and args.dry_run:
        todo = runs_to_train(plan, root, seeds, args.metric, args.train_args)
        print(f'[results_table] {len(todo)} runs to train:')
        for row, seed in todo:
            cmd = train_command(row, seed, root, args.train_args)
            log = osp.join(run_dir(root, row, seed), 'train.log')
            print(f'{shlex.join(cmd)} > {shlex.quote(log)} 2>&1')
        return 0
    if args.run:
        failed = train_missing(
            plan,
            root,
            seeds,
            args.metric,
            args.train_args,
            echo=lambda line: print(line, flush=True))
    results = collect(plan, root, seeds, args.metric, args.train_args,
                      failed, args.scale)
    out = args.out or osp.join(root, 'results.md')
    md_path, json_path = write_results(results, out)
    print(to_markdown(results))
    print(f'table: {md_path}')
    print(f'json:  {json_path}')
    if failed:
        print(f'[results_table] {len(failed)} run(s) failed; see the logs '
              f'named above.', file=sys.stderr)
        return 1
    return 0


def cli() -> int:
    """Run :func:`main`; bad input ends in one ``error:`` line."""
    try:
        from mmreviewkd.utils.cli_errors import run_cli
    except RuntimeError as e:  # `import mmreviewkd` checks dependency versions
        print(f'error: {e}', file=sys.stderr)
        return 1
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
