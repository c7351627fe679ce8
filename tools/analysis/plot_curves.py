# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Training curves of one or several runs from MMEngine's json logs.

    python tools/analysis/plot_curves.py RUN [RUN ...] [--keys KEY ...]
        [--labels LABEL ...] [--out curves.png] [--vis-backend local ...]

RUN is a work dir of ``tools/train.py`` (its latest ``<timestamp>`` run), a
``<timestamp>`` dir or a ``vis_data/scalars.json`` file. Default panels:
the task loss (a distiller's ``student.*`` losses summed; ``loss`` of a
plain run), ``loss_hcl`` and every ``loss_hcl.<level>``, every other
``loss_<name>`` term, ``distill_weight`` and the validation metric; x is the
iteration. ``--keys`` picks panels by log key or shell pattern
(``'loss_hcl.*'``, ``task_loss``, ``accuracy/top1``). One colour per run.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmreviewkd.analysis.figures import add_vis_args
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'runs', nargs='+', help='work dirs, <timestamp> dirs or json logs')
    parser.add_argument(
        '--keys', nargs='+', default=None, help='panels: keys or patterns')
    parser.add_argument(
        '--labels', nargs='+', default=None, help='one legend label per run')
    parser.add_argument('--title', default=None)
    parser.add_argument('--out', default='curves.png', help='PNG file')
    add_vis_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmreviewkd.analysis.curves import plot_curves
    out = plot_curves(
        args.runs,
        out=args.out,
        keys=args.keys,
        labels=args.labels,
        title=args.title,
        vis_backends=args.vis_backend,
        vis_dir=args.vis_dir)
    print(f'curves: {out}')
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
