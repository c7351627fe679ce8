# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Convert a CRD / RepDistiller, mdistiller or ReviewKD CIFAR checkpoint (and
ReviewKD's ImageNet MobileNetV1) into an mmpretrain ImageClassifier checkpoint
of mmreviewkd.

Example::

    python tools/model_converters/repdistiller_to_mmreviewkd.py \\
        save/models/resnet56_vanilla/ckpt_epoch_240.pth \\
        checkpoints/resnet56_cifar100.pth --arch resnet56

The matching model config is printed and stored in the output's
``meta['model']``. The conversion itself lives in
``mmreviewkd.models.backbones.converters``.
"""
import argparse
import pickle
import sys
from typing import List, Optional

import torch


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmreviewkd.models.backbones.converters import REPDISTILLER_ARCHS
    parser = argparse.ArgumentParser(
        description='Convert a RepDistiller/mdistiller/ReviewKD checkpoint '
        'into an mmreviewkd ImageClassifier checkpoint.')
    parser.add_argument('src', help='source checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--arch',
        required=True,
        help='architecture, by its RepDistiller name: '
        f'{", ".join(REPDISTILLER_ARCHS)} (also accepts e.g. wrn-40-2, '
        'vgg13_bn, mobile_half)')
    parser.add_argument(
        '--prefix',
        default=None,
        help="convert only the keys under this prefix, e.g. 'student.' for "
        'a ReviewKD distillation checkpoint')
    parser.add_argument(
        '--trust-pickle',
        action='store_true',
        help='load the source with weights_only=False (runs arbitrary '
        'pickled code; only for files you trust)')
    return parser.parse_args(argv)


def load_source(path: str, trust_pickle: bool = False):
    """``torch.load`` on CPU, weights-only unless ``trust_pickle``."""
    from mmreviewkd.models.backbones.converters import \
        CheckpointConversionError
    from mmreviewkd.utils import register_checkpoint_safe_globals
    register_checkpoint_safe_globals()
    try:
        return torch.load(
            path, map_location='cpu', weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0]
        raise CheckpointConversionError(
            f'{path} cannot be loaded weights-only ({first_line}); pass '
            '--trust-pickle if you trust the file') from None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmreviewkd.models.backbones.converters import (
        CheckpointConversionError, convert_repdistiller_checkpoint)
    try:
        checkpoint = load_source(args.src, args.trust_pickle)
        converted = convert_repdistiller_checkpoint(checkpoint, args.arch,
                                                    args.prefix)
    except (CheckpointConversionError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    converted['meta']['source'] = args.src
    torch.save(converted, args.dst)
    meta = converted['meta']
    print(f'converted {len(converted["state_dict"])} tensors of '
          f'{meta["arch"]} ({meta["num_classes"]} classes) to {args.dst}')
    print(f'model = {meta["model"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
