# Copyright (c) mmreviewkd contributors. All rights reserved.
"""RNGStateHook: the Python / numpy / torch RNG states go into every
checkpoint and come back (values compared) when MMEngine's Runner resumes,
also when ``Runner.resume`` re-seeds after loading; plain ``load_from``
leaves the RNGs alone. Checkpoints go through the atomic storage backend."""
import os.path as osp
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmreviewkd.engine.hooks import (RNGStateHook, capture_rng_state,
                                     restore_rng_state)
from mmreviewkd.utils.checkpoint_io import (ATOMIC_BACKEND_ARGS,
                                            AtomicLocalBackend)


def draw():
    """Numbers from each RNG the hook covers."""
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_capture_and_restore_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draw()
    path = tmp_path / 'ck.pth'
    torch.save(dict(meta=dict(rng_state=capture_rng_state())), path)
    expected = [draw() for _ in range(3)]
    state = torch.load(path, weights_only=True)['meta']['rng_state']
    restore_rng_state(state)
    assert [draw() for _ in range(3)] == expected


def fake_runner(name, world_size=1, **cfg):
    return SimpleNamespace(
        cfg=Config(cfg),
        world_size=world_size,
        logger=MMLogger.get_instance(name))


def saved_checkpoint(hook, runner):
    checkpoint = dict(meta=dict(epoch=1))
    hook.before_save_checkpoint(runner, checkpoint)
    assert 'rng_state' in checkpoint['meta']
    return checkpoint


def test_hook_restores_on_resume_only(capsys):
    hook = RNGStateHook()
    runner = fake_runner('rng_resume', resume=True)
    checkpoint = saved_checkpoint(hook, runner)
    expected = draw()
    hook.after_load_checkpoint(runner, checkpoint)
    draw()  # e.g. Runner.resume re-seeding
    hook.before_train(runner)
    assert draw() == expected
    assert 'Restored the RNG states' in capsys.readouterr().out

    # load_from without resume: weights only, the RNGs are left alone
    hook = RNGStateHook()
    runner = fake_runner('rng_load', resume=False)
    checkpoint = saved_checkpoint(hook, runner)
    expected = draw()
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert draw() != expected
    assert 'RNG states' not in capsys.readouterr().out


def test_hook_without_states_or_with_per_rank_seeds(capsys):
    hook = RNGStateHook()
    runner = fake_runner('rng_none', resume=True)
    hook.after_load_checkpoint(runner, dict(meta=dict(epoch=1)))
    hook.before_train(runner)
    assert 'The checkpoint holds no RNG states' in capsys.readouterr().out

    runner = fake_runner(
        'rng_ranks',
        resume=True,
        randomness=dict(seed=0, diff_rank_seed=True),
        world_size=2)
    checkpoint = saved_checkpoint(hook, runner)
    expected = draw()
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert draw() != expected
    out = capsys.readouterr().out
    assert 'RNG states not restored: randomness.diff_rank_seed=True' in out


# ------------------------------------------------- with MMEngine's Runner
class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        outputs = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=(outputs - torch.stack(data_samples)).abs().sum())
        return outputs


class ToyDataset(Dataset):
    metainfo = dict()

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return dict(
            inputs=torch.full((2, ), float(index)), data_samples=torch.ones(1))


class DrawProbe(Hook):
    """Draws right after the RNG states were captured / restored."""

    priority = 'LOWEST'

    def __init__(self):
        self.at_save = {}
        self.at_start = None

    def before_save_checkpoint(self, runner, checkpoint):
        self.at_save[checkpoint['meta']['iter']] = draw()

    def before_train(self, runner):
        self.at_start = draw()


def toy_runner(work_dir, name, seed, resume=False, load_from=None):
    probe = DrawProbe()
    runner = Runner(
        model=ToyModel(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=3,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                interval=2,
                by_epoch=False,
                backend_args=dict(ATOMIC_BACKEND_ARGS))),
        custom_hooks=[RNGStateHook(), probe],
        resume=resume,
        load_from=load_from,
        randomness=dict(seed=seed),
        experiment_name=name,
        default_scope='mmengine',
        cfg=dict(resume=resume, randomness=dict(seed=seed)))
    return runner, probe


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('rng_runner'))
    written = []
    put = AtomicLocalBackend.put

    def spy(self, obj, filepath):
        written.append(str(filepath))
        put(self, obj, filepath)

    mp = pytest.MonkeyPatch()
    mp.setattr(AtomicLocalBackend, 'put', spy)
    try:
        runner, probe = toy_runner(work_dir, 'rng_first', seed=0)
        runner.train()
    finally:
        mp.undo()
    return work_dir, probe, written


def test_checkpoints_are_written_by_the_atomic_backend(first_run):
    work_dir, _, written = first_run
    expected = [osp.join(work_dir, f'iter_{i}.pth') for i in (2, 4)]
    assert written == expected
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == expected[-1]
    ck = torch.load(expected[0], map_location='cpu', weights_only=False)
    assert 'rng_state' in ck['meta']


def test_runner_resume_restores_the_states_after_its_reseeding(first_run):
    work_dir, probe, _ = first_run
    ckpt = osp.join(work_dir, 'iter_2.pth')
    # another seed than the checkpoint's: Runner.resume re-seeds after
    # after_load_checkpoint; the hook restores after that
    runner, resumed = toy_runner(
        work_dir + '_resume',
        'rng_resume_runner',
        seed=5,
        resume=True,
        load_from=ckpt)
    runner.train()
    assert runner.iter == 4
    assert resumed.at_start == probe.at_save[2]

    runner, loaded = toy_runner(
        work_dir + '_load', 'rng_load_runner', seed=5, load_from=ckpt)
    runner.train()
    assert loaded.at_start != probe.at_save[2]
