# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Write a student-only checkpoint from a ReviewKD distiller checkpoint.

    python tools/model_converters/extract_student.py \
        work_dirs/reviewkd_x/best_accuracy_top1_epoch_200.pth student.pth

The output has only the student's weights (no teacher, connector or
optimizer) under the student's own key names; it loads into the student's
plain mmpretrain/mmdet config:
``python tools/test.py STUDENT_CONFIG student.pth``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Extract the student from a ReviewKD checkpoint')
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='student-only checkpoint to write')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import io

    import torch

    import mmreviewkd  # noqa: F401
    from mmreviewkd.models.utils import export_student
    from mmreviewkd.utils.checkpoint_check import read_checkpoint
    from mmreviewkd.utils.checkpoint_io import atomic_write_bytes
    from mmreviewkd.utils.errors import ConfigError
    if osp.abspath(args.src) == osp.abspath(args.dst):
        raise ConfigError(f'extract_student: the output {args.dst!r} would '
                          f'overwrite the input; give another file name.')
    if osp.isdir(args.dst):
        raise ConfigError(f'extract_student: the output {args.dst!r} is a '
                          f'directory; give a file name (e.g. '
                          f'{osp.join(args.dst, "student.pth")}).')
    out = export_student(read_checkpoint(args.src))
    buffer = io.BytesIO()
    torch.save(out, buffer)
    atomic_write_bytes(buffer.getvalue(), args.dst)
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, '
          f'{n / 1e6:.3f}M values (student only)')


def cli() -> int:
    """Bad input ends in one ``error:`` line, see ``tools/train.py``."""
    try:
        from mmreviewkd.utils.cli_errors import run_cli
    except RuntimeError as e:  # `import mmreviewkd` checks dependency versions
        print(f'error: {e}', file=sys.stderr)
        return 1
    return run_cli(main)


if __name__ == '__main__':
    sys.exit(cli())
