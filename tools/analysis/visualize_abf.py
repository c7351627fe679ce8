# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Draw the ABF attention maps of a trained distiller over images.

    python tools/analysis/visualize_abf.py CONFIG CHECKPOINT IMAGE [IMAGE ...]
        [--out-dir DIR] [--device cpu] [--cfg-options k=v ...]
        [--vis-backend local ...]

CONFIG is the ReviewKD config of the run and CHECKPOINT one of its distiller
checkpoints (``WORK_DIR/epoch_N.pth``: student, ABFs and teacher; the
config's ``teacher_ckpt`` is not read; a student-only ``student_final.pth``
has no ABFs and is refused). Each image goes through the config's test
pipeline and the distiller's data preprocessor; student and teacher
features are read as in training. Per image one PNG
(``DIR/<image name>_abf.png``): the input, then for every fusing level the
weight of the level's own feature and the weight of the deeper residual
(sigmoid maps, 0-1) over the image, with the level's HCL between the ABF
output and the teacher feature.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmreviewkd.analysis.figures import add_vis_args
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the ReviewKD config of the run')
    parser.add_argument('checkpoint', help='a distiller checkpoint')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument(
        '--out-dir', default='abf_maps', help='folder of the PNGs')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    add_vis_args(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmreviewkd.analysis.abf_maps import visualize_abf
    paths = visualize_abf(
        args.config,
        args.checkpoint,
        args.images,
        args.out_dir,
        device=args.device,
        cfg_options=args.cfg_options,
        vis_backends=args.vis_backend,
        vis_dir=args.vis_dir)
    for path in paths:
        print(f'ABF maps: {path}')
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
