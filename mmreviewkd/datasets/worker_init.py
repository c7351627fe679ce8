# Copyright (c) mmreviewkd contributors. All rights reserved.
"""DataLoader worker seeding that varies per epoch and resumes exactly.

How the seeds come about (PyTorch, ``torch/utils/data``): every time an
epoch's iterator is created, ``_BaseDataLoaderIter`` draws ``base_seed``
from the DataLoader's ``generator`` (None: the main process's torch RNG);
each worker then seeds ``random`` and ``torch`` with
``base_seed + worker_id`` and numpy with a state derived from both, before
it calls ``worker_init_fn``.

MMEngine's default ``worker_init_fn`` (``mmengine.dataset.worker_init_fn``,
used whenever a seed is set) overwrites these with the constant
``seed + worker_id + rank * num_workers``. With workers that are not
persistent every epoch then repeats the previous epoch's random draws;
persistent workers keep varying, but their RNG states are not in any
checkpoint, so a resumed run augments differently.

Two parts make worker augmentation vary per epoch and resume exactly:

- :func:`seed_worker_from_torch`, the ``worker_init_fn``: it keeps
  PyTorch's per-iterator seeds (other ranks mix in their rank, so ranks
  whose RNGs are equal do not draw the same augmentation);
- :class:`~mmreviewkd.engine.hooks.WorkerSeedHook`: before each epoch it
  gives the train DataLoader a ``generator`` seeded with
  :func:`epoch_generator_seed` (seed, epoch, rank), so ``base_seed`` does
  not depend on what else used the main RNG (a validation after the
  checkpoint was saved, the teacher evaluation of a resumed run).
  ``tools/train.py`` adds it to configs that use the function
  (:func:`add_worker_seed_hook`). Without the hook the seeds still change
  every epoch, and :class:`~mmreviewkd.engine.hooks.RNGStateHook` restores
  the main RNG on resume.

The shipped dataset configs use::

    train_dataloader = dict(
        persistent_workers=False,
        worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch'))
"""
import os
import random
import warnings
from typing import Optional

import numpy as np
import torch

from mmreviewkd.registry import FUNCTIONS

WORKER_INIT_TYPE = 'mmreviewkd.seed_worker_from_torch'
WORKER_SEED_HOOK = 'mmreviewkd.WorkerSeedHook'


def _rank() -> int:
    """This process's global rank (a forked worker inherits the process
    group's state; a spawned one falls back to the launchers' ``RANK``)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get('RANK', 0))


def _mix(*values: int) -> int:
    """A seed in ``[0, 2**63)`` from integers (numpy's SeedSequence)."""
    mask = 0xFFFFFFFF
    entropy = []
    for value in values:
        value = int(value) & (2**64 - 1)
        entropy += [value & mask, value >> 32]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & (2**63 - 1)


def derive_worker_seed(torch_seed: int, rank: int) -> int:
    """A worker seed from PyTorch's worker seed and the rank.

    Args:
        torch_seed (int): ``torch.utils.data.get_worker_info().seed``.
        rank (int): The global rank.

    Returns:
        int: A seed in ``[0, 2**63)``.
    """
    return _mix(torch_seed, rank)


def epoch_generator_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of the train DataLoader's generator in ``epoch``.

    Args:
        seed (int): The run's seed (``runner.seed``).
        epoch (int): The 0-based epoch about to start.
        rank (int): The global rank.

    Returns:
        int: A seed in ``[0, 2**63)``.
    """
    return _mix(seed, epoch, rank, 0x5EED)


@FUNCTIONS.register_module()
def seed_worker_from_torch(worker_id: int,
                           rank: Optional[int] = None,
                           disable_subprocess_warning: bool = False) -> None:
    """``worker_init_fn`` that keeps PyTorch's per-epoch worker seeds.

    On rank 0 the ``random``, numpy and torch seeds PyTorch set for this
    worker are left as they are; on other ranks all three are reseeded from
    :func:`derive_worker_seed` (PyTorch's worker seed and the rank).

    Args:
        worker_id (int): Passed by the DataLoader.
        rank (int, optional): Global rank; defaults to the process group's
            (or ``RANK``).
        disable_subprocess_warning (bool): Ignore warnings in workers other
            than worker 0, like MMEngine's default. Defaults to False.
    """
    info = torch.utils.data.get_worker_info()
    rank = _rank() if rank is None else int(rank)
    if info is not None and rank != 0:
        seed = derive_worker_seed(int(info.seed), rank)
        random.seed(seed)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
    if disable_subprocess_warning and worker_id != 0:
        warnings.simplefilter('ignore')


def uses_seed_worker_from_torch(dataloader_cfg) -> bool:
    """Whether a dataloader config names :func:`seed_worker_from_torch`."""
    if not isinstance(dataloader_cfg, dict):
        return False
    init = dataloader_cfg.get('worker_init_fn')
    init_type = init.get('type') if isinstance(init, dict) else None
    if callable(init_type):
        return init_type is seed_worker_from_torch
    return isinstance(init_type, str) and \
        init_type.rsplit('.', 1)[-1] == 'seed_worker_from_torch'


def add_worker_seed_hook(cfg):
    """Add :class:`~mmreviewkd.engine.hooks.WorkerSeedHook` to the
    ``custom_hooks`` of a config whose train dataloader uses
    :func:`seed_worker_from_torch` (unless it lists one already).

    Args:
        cfg (Config): The config; changed in place.

    Returns:
        Config: ``cfg``.
    """
    if not uses_seed_worker_from_torch(cfg.get('train_dataloader')):
        return cfg
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            isinstance(h, dict)
            and str(h.get('type', '')).rsplit('.', 1)[-1] == 'WorkerSeedHook'
            for h in hooks):
        hooks.append(dict(type=WORKER_SEED_HOOK))
        cfg.custom_hooks = hooks
    return cfg
