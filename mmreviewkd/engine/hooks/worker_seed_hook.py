# Copyright (c) mmreviewkd contributors. All rights reserved.
import torch
from mmengine.hooks import Hook

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class WorkerSeedHook(Hook):
    """Seed each epoch's DataLoader workers from (seed, epoch, rank).

    PyTorch draws the workers' ``base_seed`` from the DataLoader's
    ``generator`` (by default the main process's torch RNG) whenever an
    epoch's iterator is created. This hook gives the train DataLoader, in
    ``before_train_epoch``, a ``torch.Generator`` seeded from the run's
    seed, the epoch and the rank. The workers of epoch ``e`` then draw the
    same random augmentation in an uninterrupted and in a resumed run,
    whatever else used the main RNG in between (the validation after the
    checkpoint, the teacher evaluation of a resumed run), and a different
    one every epoch.

    It needs non-persistent workers (``persistent_workers=False``) and a
    ``worker_init_fn`` that keeps PyTorch's seeds:
    ``worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch')``
    (MMEngine's default reseeds every worker with a constant).
    ``tools/train.py`` adds this hook to configs whose train dataloader
    uses that function (:func:`~mmreviewkd.datasets.worker_init.
    add_worker_seed_hook`).
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        from mmreviewkd.datasets.worker_init import epoch_generator_seed
        loader = runner.train_loop.dataloader
        generator = torch.Generator()
        generator.manual_seed(
            epoch_generator_seed(runner.seed, runner.epoch, runner.rank))
        loader.generator = generator
