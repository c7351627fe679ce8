# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Crash safety: SIGKILL after an epoch, then ``--resume`` continues exactly;
a corrupt newest checkpoint is skipped (and said so); checkpoint writes are
atomic, so a kill during a save leaves the previous file intact."""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import ROOT, logged_scalars, run_tool, tool_env
from mmreviewkd.utils.checkpoint_io import (AtomicLocalBackend,
                                            atomic_write_bytes,
                                            checkpoint_problem,
                                            is_partial_file)

ITERS_PER_EPOCH = 4  # 32 images / batch 8


def _ok(proc):
    assert proc.returncode == 0, (proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def _truncate(path):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """An uninterrupted 3-epoch run and a run SIGKILLed after epoch 2 (plus a
    copy of the killed run's work dir for the corrupt-checkpoint test)."""
    tmp = tmp_path_factory.mktemp('crash_resume')
    data = make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=32,
        num_test=16)
    config = tmp / 'tiny.py'
    config.write_text(tiny_distill_config(data))
    kill_config = tmp / 'tiny_kill.py'
    kill_config.write_text(
        tiny_distill_config(
            data,
            extra_hooks=[dict(type='mmreviewkd.KillAfterEpochHook', epoch=2)]))

    full_dir = str(tmp / 'full')
    _ok(run_tool('train.py', str(config), '--work-dir', full_dir))

    killed_dir = str(tmp / 'killed')
    proc = run_tool('train.py', str(kill_config), '--work-dir', killed_dir)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    copy_dir = str(tmp / 'killed_copy')
    shutil.copytree(killed_dir, copy_dir)
    return dict(
        config=str(config),
        full_dir=full_dir,
        killed_dir=killed_dir,
        copy_dir=copy_dir,
        full=logged_scalars(full_dir))


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(runs):
    killed_dir = runs['killed_dir']
    assert osp.isfile(osp.join(killed_dir, 'epoch_2.pth'))
    assert not osp.exists(osp.join(killed_dir, 'epoch_3.pth'))
    assert not osp.exists(osp.join(killed_dir, 'student_final.pth'))

    log = _ok(
        run_tool('train.py', runs['config'], '--work-dir', killed_dir,
                 '--resume'))
    assert f'resuming from {osp.join(killed_dir, "epoch_2.pth")}' in log
    assert 'resumed epoch: 2, iter: 8' in log
    assert 'Restored the RNG states' in log

    resumed = logged_scalars(killed_dir)
    full_e3 = [r for r in runs['full'] if r['epoch'] == 3]
    assert [r['iter'] for r in resumed] == [9, 10, 11, 12]
    assert len(full_e3) == ITERS_PER_EPOCH
    # random crop + flip run in the main process: without the restored RNG
    # states these would differ
    for a, b in zip(full_e3, resumed):
        assert b['lr'] == pytest.approx(a['lr'])
        assert b['distill_weight'] == a['distill_weight'] == 1.0
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-5, abs=1e-6)
        assert b['loss_hcl'] == pytest.approx(
            a['loss_hcl'], rel=1e-5, abs=1e-6)

    import mmreviewkd  # noqa: F401  (weights-only allow-list)
    ck_full = torch.load(
        osp.join(runs['full_dir'], 'epoch_3.pth'), map_location='cpu')
    ck_res = torch.load(
        osp.join(killed_dir, 'epoch_3.pth'), map_location='cpu')
    assert ck_res['meta']['epoch'] == 3 and ck_res['meta']['iter'] == 12
    assert 'rng_state' in ck_res['meta']
    for key, value in ck_full['state_dict'].items():
        torch.testing.assert_close(
            ck_res['state_dict'][key], value, rtol=1e-5, atol=1e-6)
    assert osp.isfile(osp.join(killed_dir, 'student_final.pth'))


@pytest.mark.slow
def test_corrupt_newest_checkpoint_is_skipped_with_a_message(runs):
    work_dir = runs['copy_dir']
    newest = osp.join(work_dir, 'epoch_2.pth')
    _truncate(newest)
    assert 'truncated or corrupt' in checkpoint_problem(newest)
    # what a kill during an atomic save leaves behind
    partial = osp.join(work_dir, '.epoch_3.pth.999.0badc0de.partial')
    with open(partial, 'wb') as f:
        f.write(b'PK\x03\x04 half a checkpoint')

    log = _ok(
        run_tool('train.py', runs['config'], '--work-dir', work_dir,
                 '--resume'))
    lines = [line for line in log.splitlines() if 'skipped incomplete' in line]
    assert len(lines) == 1, log[-3000:]
    assert newest in lines[0] and 'truncated or corrupt' in lines[0]
    assert f'resuming from {osp.join(work_dir, "epoch_1.pth")}, the last ' \
        'complete checkpoint' in lines[0]
    assert 'resumed epoch: 1, iter: 4' in log
    assert not osp.exists(partial) and f'Removed {partial}' in log

    resumed = logged_scalars(work_dir)
    full_tail = [r for r in runs['full'] if r['epoch'] >= 2]
    assert [r['iter'] for r in resumed] == list(range(5, 13))
    for a, b in zip(full_tail, resumed):
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-5, abs=1e-6)
    # epoch 2 was trained again and its checkpoint rewritten, complete
    assert checkpoint_problem(newest) is None


def test_checkpoint_problem_detects_truncation_and_corruption(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict={'w': torch.arange(4096.)}), good)
    assert checkpoint_problem(str(good)) is None
    data = good.read_bytes()

    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) - 100])
    assert 'truncated or corrupt' in checkpoint_problem(str(truncated))
    flipped = bytearray(data)
    index = data.index(b'\x00\x00\x80\x3f')  # 1.0 in the tensor data
    flipped[index + 3] ^= 0xFF
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(bytes(flipped))
    assert 'corrupt' in checkpoint_problem(str(corrupt))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    assert checkpoint_problem(str(empty)) == 'it is empty'
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    assert 'not a PyTorch checkpoint' in checkpoint_problem(str(text))
    assert 'does not exist' in checkpoint_problem(str(tmp_path / 'no.pth'))
    legacy = tmp_path / 'legacy.pth'
    torch.save({'w': torch.ones(2)},
               legacy,
               _use_new_zipfile_serialization=False)
    assert checkpoint_problem(str(legacy)) is None


def test_atomic_write_keeps_the_old_file_when_the_write_fails(
        tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    atomic_write_bytes(b'old complete checkpoint', target)
    assert target.read_bytes() == b'old complete checkpoint'

    def no_space(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', no_space)
    with pytest.raises(OSError, match='No space'):
        AtomicLocalBackend().put(b'new, never completed', target)
    assert target.read_bytes() == b'old complete checkpoint'
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # no partial file left


CHILD = textwrap.dedent('''
    import os, sys, time
    from mmreviewkd.utils import checkpoint_io
    target = sys.argv[1]
    def stuck(src, dst):  # the kill comes between write and rename
        print('written', flush=True)
        time.sleep(60)
    os.replace = stuck
    checkpoint_io.atomic_write_bytes(b'N' * (8 << 20), target)
''')


def test_sigkill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    """A real process killed in the middle of a save: the checkpoint file
    is still the old, complete one; the partial file is recognisable (and
    removed by the next resume)."""
    target = tmp_path / 'epoch_2.pth'
    torch.save(dict(state_dict={'w': torch.ones(8)}), target)
    before = target.read_bytes()
    child = subprocess.Popen(
        [sys.executable, '-c', CHILD, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=tool_env())
    try:
        assert child.stdout.readline().strip() == 'written'
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert target.read_bytes() == before
    assert checkpoint_problem(str(target)) is None
    partial = [n for n in os.listdir(tmp_path) if n != 'epoch_2.pth']
    assert len(partial) == 1 and is_partial_file(partial[0])
    assert os.path.getsize(tmp_path / partial[0]) == 8 << 20
