# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Exact resume with augmentation in a DataLoader worker.

With ``worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch')`` and
``persistent_workers=False`` (the shipped dataset configs; tools/train.py
adds ``WorkerSeedHook``) the worker's random crop / flip differ from epoch
to epoch, and a run killed after epoch 1 and resumed gives the same
augmentation and losses as an uninterrupted one. The runs validate after
every epoch and evaluate no teacher (like a baseline config): the
uninterrupted run uses the main RNG for the validation after the
checkpoint, the resumed one does not, which must not matter. MMEngine's
default worker seeding (the control) repeats the previous epoch's random
draws."""
import json
import os
import os.path as osp
import signal
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import ROOT, logged_scalars, run_tool, tool_env
from mmreviewkd.datasets.worker_init import (add_worker_seed_hook,
                                             derive_worker_seed,
                                             epoch_generator_seed,
                                             seed_worker_from_torch)

# Records, per training iteration, each sample's index, flip flag and a
# checksum of the augmented image (a test-only hook, imported by the config).
RECORD_HOOK = textwrap.dedent('''\
    import json
    import zlib

    from mmengine.hooks import Hook

    from mmreviewkd.registry import HOOKS


    @HOOKS.register_module()
    class AugmentRecordHook(Hook):
        priority = 'HIGHEST'

        def __init__(self, out_file):
            self.out_file = out_file

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            samples = [
                [int(s.sample_idx), bool(s.get('flip', False)),
                 zlib.crc32(img.numpy().tobytes())]
                for s, img in zip(data_batch['data_samples'],
                                  data_batch['inputs'])
            ]
            with open(self.out_file, 'a') as f:
                f.write(json.dumps(dict(epoch=runner.epoch + 1,
                                        iter=runner.iter + 1,
                                        samples=samples)) + '\\n')
''')

SEED_FN = 'mmreviewkd.seed_worker_from_torch'


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _epoch(records, epoch):
    return [s for r in records if r['epoch'] == epoch for s in r['samples']]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('worker_seed')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=32,
        num_test=16)
    hook_dir = tmp / 'hooks'
    hook_dir.mkdir()
    (hook_dir / 'augment_record_hook.py').write_text(RECORD_HOOK)
    env = dict(
        PYTHONPATH=str(hook_dir) + os.pathsep + tool_env()['PYTHONPATH'])
    imports = ("\ncustom_imports = dict(imports=['helpers.kill_hook', "
               "'augment_record_hook'], allow_failed_imports=False)\n")

    def config(name, record_file, kill_after=None, worker_init=SEED_FN):
        hooks = [
            dict(
                type='mmreviewkd.AugmentRecordHook', out_file=str(record_file))
        ]
        if kill_after is not None:
            hooks.append(
                dict(type='mmreviewkd.KillAfterEpochHook', epoch=kill_after))
        text = tiny_distill_config(
            data,
            custom_hooks=[
                dict(type='mmreviewkd.TeacherEvalHook', enabled=False)
            ],
            extra_hooks=hooks,
            max_epochs=2)
        text += imports
        # augmentation in one worker process, started again every epoch
        text += ('train_dataloader.update(num_workers=1, '
                 'persistent_workers=False)\n')
        if worker_init is not None:
            text += ('train_dataloader.update(worker_init_fn=dict(type='
                     f'{worker_init!r}))\n')
        path = tmp / name
        path.write_text(text)
        return str(path)

    def train(cfg, work_dir, *args):
        return run_tool(
            'train.py', cfg, '--work-dir', str(tmp / work_dir), *args, env=env)

    return dict(tmp=tmp, config=config, train=train)


@pytest.mark.slow
def test_killed_and_resumed_run_matches_and_epochs_differ(setup):
    tmp, config, train = setup['tmp'], setup['config'], setup['train']
    full_rec, killed_rec = tmp / 'full.jsonl', tmp / 'killed.jsonl'
    _ok(train(config('full.py', full_rec), 'full'))
    proc = train(config('kill.py', killed_rec, kill_after=1), 'killed')
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    log = _ok(train(config('resume.py', killed_rec), 'killed', '--resume'))
    assert 'resumed epoch: 1' in log
    assert 'WorkerSeedHook' in log

    full, killed = _records(full_rec), _records(killed_rec)
    # augmentation differs between epochs (position by position: the
    # worker's random stream is not restarted from the same seed)
    e1, e2 = _epoch(full, 1), _epoch(full, 2)
    assert len(e1) == len(e2) == 32
    assert [s[1] for s in e1] != [s[1] for s in e2]
    crc1 = {idx: crc for idx, _, crc in e1}
    crc2 = {idx: crc for idx, _, crc in e2}
    assert sum(crc1[i] != crc2[i] for i in crc1) >= 24
    # the killed run saw epoch 1 like the full run, the resumed one epoch 2
    assert _epoch(killed, 1) == e1
    assert _epoch(killed, 2) == e2
    resumed = logged_scalars(str(tmp / 'killed'))
    full_e2 = [r for r in logged_scalars(str(tmp / 'full')) if r['epoch'] == 2]
    assert [r['iter'] for r in resumed] == [r['iter'] for r in full_e2]
    for a, b in zip(full_e2, resumed):
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_mmengine_default_seeding_repeats_the_draws(setup):
    """The control: MMEngine's worker_init_fn reseeds the worker with the
    same seed every epoch, so the i-th sample of every epoch is flipped
    alike."""
    tmp, config, train = setup['tmp'], setup['config'], setup['train']
    rec = tmp / 'default.jsonl'
    _ok(train(config('default.py', rec, worker_init=None), 'default'))
    records = _records(rec)
    assert [s[1] for s in _epoch(records, 1)] == \
        [s[1] for s in _epoch(records, 2)]


def test_seed_worker_keeps_torch_seeds_on_rank0_and_mixes_the_rank():
    """Inside a real worker: rank 0 keeps PyTorch's per-iterator seeds,
    rank 1 gets different ones; both change with the main process's
    RNG."""

    class Draws(torch.utils.data.Dataset):

        def __len__(self):
            return 2

        def __getitem__(self, i):
            info = torch.utils.data.get_worker_info()
            return (info.seed, float(np.random.rand()), float(torch.rand(1)))

    def draws(rank, main_seed):
        torch.manual_seed(main_seed)
        loader = torch.utils.data.DataLoader(
            Draws(),
            batch_size=None,
            num_workers=1,
            worker_init_fn=lambda wid: seed_worker_from_torch(wid, rank=rank))
        return list(loader)

    r0, r0_again, r1 = draws(0, 0), draws(0, 0), draws(1, 0)
    assert r0 == r0_again
    torch_seed = r0[0][0]
    assert r1[0][0] == torch_seed  # torch's seed, reseeded on rank 1
    assert [d[1:] for d in r0] != [d[1:] for d in r1]
    assert draws(0, 1) != r0
    assert derive_worker_seed(torch_seed,
                              1) != derive_worker_seed(torch_seed, 2)


def test_epoch_generator_seeds_and_the_hook_is_added_where_needed():
    seeds = {
        epoch_generator_seed(0, epoch, rank)
        for epoch in range(3)
        for rank in range(2)
    }
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    assert epoch_generator_seed(0, 1, 0) == epoch_generator_seed(0, 1, 0)
    assert epoch_generator_seed(1, 1, 0) != epoch_generator_seed(0, 1, 0)

    cfg = Config(
        dict(train_dataloader=dict(worker_init_fn=dict(type=SEED_FN))))
    add_worker_seed_hook(cfg)
    add_worker_seed_hook(cfg)
    assert cfg.custom_hooks == [dict(type='mmreviewkd.WorkerSeedHook')]
    cfg = Config(dict(train_dataloader=dict(num_workers=2)))
    add_worker_seed_hook(cfg)
    assert 'custom_hooks' not in cfg


def test_shipped_dataset_configs_seed_workers_per_epoch():
    from mmreviewkd.utils.config_check import load_config
    for path in ('configs/_base_/datasets/cifar100_bs16_reviewkd.py',
                 'configs/baselines/imagenet/mobilenetv1_8xb32-100e_in1k.py',
                 'configs/reviewkd/imagenet/'
                 'reviewkd_resnet34_resnet18_8xb32-100e_in1k.py',
                 'configs/reviewkd/imagenet/'
                 'reviewkd_resnet50_mobilenetv1_8xb32-100e_in1k.py'):
        cfg = load_config(osp.join(ROOT, path))
        loader = cfg.train_dataloader
        assert loader.worker_init_fn == dict(type=SEED_FN), path
        assert loader.persistent_workers is False, path
