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

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Extract the student from a ReviewKD checkpoint')
    parser.add_argument('src', help='distiller checkpoint')
    parser.add_argument('dst', help='student-only checkpoint to write')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import mmreviewkd  # noqa: F401  (allow-lists MMEngine checkpoint types)
    from mmreviewkd.models.utils import export_student
    if not osp.isfile(args.src):
        sys.exit(f'error: checkpoint {args.src!r} does not exist.')
    ckpt = torch.load(args.src, map_location='cpu')
    try:
        out = export_student(ckpt)
    except ValueError as e:
        sys.exit(f'error: {args.src}: {e}')
    torch.save(out, args.dst)
    n = sum(v.numel() for v in out['state_dict'].values())
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors, '
          f'{n / 1e6:.3f}M values (student only)')


if __name__ == '__main__':
    main()
