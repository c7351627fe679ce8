# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Extract the student from a ReviewKD distiller checkpoint."""
from collections import OrderedDict
from typing import Optional

import torch

from mmreviewkd.utils.errors import ConfigError

STUDENT_PREFIX = 'student.'


def student_state_dict(state: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The ``student.*`` entries of a distiller state dict, prefix removed
    (teacher, connector and loss weights are dropped)."""
    state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k,
                         v) for k, v in state.items())
    student = OrderedDict((k[len(STUDENT_PREFIX):], v)
                          for k, v in state.items()
                          if k.startswith(STUDENT_PREFIX))
    if not student:
        raise ConfigError(
            'the checkpoint has no "student." weights; it is not a ReviewKD '
            'distiller checkpoint (a plain model checkpoint needs no '
            'extraction).')
    return student


def export_student(ckpt: dict, meta: Optional[dict] = None) -> dict:
    """A student-only checkpoint (``meta`` + ``state_dict``, no optimizer,
    no teacher, no connector) from a distiller checkpoint dict."""
    state = ckpt.get('state_dict', ckpt)
    out_meta = dict(ckpt.get('meta', {})) if 'state_dict' in ckpt else {}
    # keep what describes the weights, drop training state
    out_meta = {
        k: v
        for k, v in out_meta.items()
        if k in ('epoch', 'iter', 'dataset_meta', 'mmengine_version',
                 'experiment_name', 'time', 'seed')
    }
    out_meta.update(meta or {})
    out_meta['exported_from'] = 'mmreviewkd.ReviewKDDistiller'
    return dict(meta=out_meta, state_dict=student_state_dict(state))
