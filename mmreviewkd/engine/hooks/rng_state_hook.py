# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Random number generator states stored in checkpoints.

MMEngine checkpoints hold the seed but not the RNG states, so after a resume
data augmentation done in the main process (``num_workers=0``, or workers
that are not persistent) draws different random numbers than an
uninterrupted run would. The states are stored as plain Python values and
tensors only, so they load with ``torch.load(weights_only=True)``.
"""
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.hooks import Hook

from mmreviewkd.registry import HOOKS


def capture_rng_state() -> Dict[str, Any]:
    """The current Python, numpy, torch (and CUDA) RNG states.

    Returns:
        dict: ``python``, ``numpy`` and ``torch`` states, plus ``cuda`` when
        CUDA is in use.
    """
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
    """Restore states written by :func:`capture_rng_state`.

    Args:
        state (dict): The captured states; missing entries are left alone.
    """
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


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the RNG states in checkpoints and restore them on resume.

    Every checkpoint the runner saves gets the Python / numpy / torch (/
    CUDA) RNG states of the main process in ``meta['rng_state']``. When a
    run resumes (``resume=True`` in the runner's config, which
    ``tools/train.py --resume`` sets), the states of the resumed checkpoint
    are restored when training starts, so random augmentation continues as
    in an uninterrupted run. Loading weights only (``load_from`` without
    ``resume``) leaves the RNGs alone.

    The states are restored in ``before_train``, not when the checkpoint is
    loaded: ``Runner.resume`` calls ``after_load_checkpoint`` first and then
    re-seeds all RNGs when the checkpoint's seed differs from the config's
    (e.g. ``randomness=dict(seed=None)``), which would overwrite them.

    With ``randomness.diff_rank_seed=True`` in a distributed run every rank
    has its own states but the checkpoint holds the main process's only;
    they are not restored then (a warning says so).

    Every ReviewKD config gets it (``mmreviewkd.utils.distill_runtime``);
    ``tools/train.py`` adds it to every other config.
    """

    # restore before any other hook's before_train
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed = False
        self._state: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the RNG states to ``checkpoint['meta']``."""
        meta = checkpoint.setdefault('meta', {})
        meta.setdefault('rng_state', capture_rng_state())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the states of a checkpoint loaded to resume from."""
        if not runner.cfg.get('resume', False):
            return
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        self._resumed = True
        self._state = meta.get('rng_state') if isinstance(meta, dict) else None

    def before_train(self, runner) -> None:
        """Restore the states kept from the resumed checkpoint."""
        if not self._resumed:
            return
        state, self._state, self._resumed = self._state, None, False
        randomness = runner.cfg.get('randomness') or {}
        if state is None:
            runner.logger.info('The checkpoint holds no RNG states; random '
                               'augmentation will differ from an '
                               'uninterrupted run.')
        elif randomness.get('diff_rank_seed', False) \
                and runner.world_size > 1:
            runner.logger.warning(
                'RNG states not restored: randomness.diff_rank_seed=True '
                'and the checkpoint holds the main process\'s states only.')
        else:
            restore_rng_state(state)
            runner.logger.info('Restored the RNG states saved with the '
                               'checkpoint.')
