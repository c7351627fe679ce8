# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Heat map of the review matrix (the paper's Table 6).

    python tools/analysis/plot_review_matrix.py [RESULTS.json] [--paper]
        [--baseline 69.1] [--out matrix.png] [--vis-backend local ...]

RESULTS.json is the JSON of ``tools/analysis/results_table.py``; its rows
with ``matrix=(i, j)`` (student stage i, teacher stage j, 1-based) are the
cells. Colours are diverging around the baseline (the JSON's baseline, or
``--baseline``): red below, blue above; each cell shows the value and the
difference; cells without a value stay blank. ``--paper`` adds (or, without
RESULTS.json, draws only) the paper's Table 6 (resnet56 -> resnet20,
baseline 69.1).
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
        'results', nargs='?', help="results_table.py's JSON")
    parser.add_argument(
        '--baseline',
        type=float,
        default=None,
        help="centre of the colours (default: the JSON's baseline)")
    parser.add_argument(
        '--paper',
        action='store_true',
        help="draw the paper's Table 6 (next to the results, if given)")
    parser.add_argument('--title', default=None)
    parser.add_argument('--out', default='matrix.png', help='PNG file')
    add_vis_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmreviewkd.analysis.review_matrix import plot_review_matrix
    if args.results is not None and not osp.isfile(args.results):
        raise FileNotFoundError(f'results {args.results!r} does not exist; '
                                f'give the .json of results_table.py.')
    out = plot_review_matrix(
        args.results,
        out=args.out,
        baseline=args.baseline,
        paper=args.paper,
        title=args.title,
        vis_backends=args.vis_backend,
        vis_dir=args.vis_dir)
    print(f'review matrix: {out}')
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
