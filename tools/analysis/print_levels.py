# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Print which student level is distilled from which teacher level.

    python tools/analysis/print_levels.py CONFIG [--cfg-options k=v ...]
        [--input-size H W]

Builds the distiller of CONFIG the way training does (stage discovery,
stride pairing, connector), without loading the teacher checkpoint: the
levels depend on the architectures only. Prints per level the student and
teacher modules, channels, stride and size at the build-time dummy input
(``model.infer_input_shape``, or ``--input-size``), the ABF that maps it,
and the levels dropped by the stride pairing. Module names can be copied
into ``student_feats=dict(points=[...])`` / ``teacher_feats=...``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark_distill import build_distiller  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a ReviewKD distiller config')
    parser.add_argument('--cfg-options', nargs='+', default=None)
    parser.add_argument(
        '--input-size',
        type=int,
        nargs=2,
        default=None,
        metavar=('H', 'W'),
        help='dummy input size for discovery and pairing (default: the '
        "config's model.infer_input_shape)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> str:
    """Print the level table of a config; returns it."""
    args = parse_args(argv)
    if args.input_size is not None:
        h, w = args.input_size
        args.cfg_options = list(
            args.cfg_options or []) + [f'model.infer_input_shape=[3,{h},{w}]']
    distiller, _ = build_distiller(args)
    table = distiller.describe_levels()
    print(f'{args.config}: teacher checkpoint not loaded (teacher_ckpt is '
          f'skipped; the levels depend on the architectures only)')
    print(table)
    return table


def cli() -> int:
    """Run :func:`main`; bad input ends in one ``error:`` line."""
    from mmreviewkd.utils.cli_errors import run_cli
    return run_cli(lambda: main() and 0)


if __name__ == '__main__':
    sys.exit(cli())
