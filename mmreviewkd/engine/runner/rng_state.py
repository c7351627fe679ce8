# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Random number generator states stored in checkpoints.

MMEngine checkpoints do not contain RNG states, so after a resume data
augmentation done in the main process (``num_workers=0``) draws different
random numbers than an uninterrupted run would. The states are stored as
plain Python values and tensors only, so they load with
``torch.load(weights_only=True)``.
"""
import random
from typing import Any, Dict

import numpy as np
import torch


def capture_rng_state() -> Dict[str, Any]:
    """The current Python, numpy, torch (and CUDA) RNG states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = dict(
        python=random.getstate(),
        numpy=(str(name), [int(k) for k in keys], int(pos), int(has_gauss),
               float(cached)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore states written by :func:`capture_rng_state`."""
    if 'python' in state:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
    if 'numpy' in state:
        name, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state(
            (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if 'torch' in state:
        torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())
