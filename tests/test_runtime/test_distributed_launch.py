# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Real 2-process training on CPU (gloo) through ``tools/dist_train.sh``
(torchrun) and ``tools/slurm_train.sh`` (with stand-in ``srun`` /
``scontrol`` executables, so MMEngine's slurm launcher really runs).

MMEngine's Runner does the training; the CPU setup is the harness's: the
configs select gloo and DDP without device ids
(``tiny_distill_config(cpu_ddp=True)``) and ``cpu_ddp_env`` lets MMEngine's
launchers start without a GPU."""
import glob
import json
import os
import os.path as osp
import socket
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import ROOT, cpu_ddp_env, logged_scalars
from mmreviewkd.utils.checkpoint_io import is_partial_file

SRUN = textwrap.dedent('''\
    #!{python}
    """Stand-in for Slurm's srun: starts --ntasks local processes with the
    SLURM_* variables a real srun sets, like --kill-on-bad-exit=1."""
    import json, os, subprocess, sys, time
    args, opts, i = sys.argv[1:], {{}}, 0
    while i < len(args):
        if args[i] == '-p':
            opts['partition'] = args[i + 1]
            i += 2
        elif args[i].startswith('-'):
            key, _, value = args[i].lstrip('-').partition('=')
            opts[key] = value
            i += 1
        else:
            break
    command = args[i:]
    with open(os.environ['FAKE_SLURM_LOG'], 'a') as f:
        f.write(json.dumps(dict(tool='srun', opts=opts, command=command)))
        f.write('\\n')
    ntasks = int(opts['ntasks'])
    per_node = int(opts.get('ntasks-per-node', ntasks))
    procs = [
        subprocess.Popen(command, env=dict(
            os.environ, SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank % per_node), SLURM_NTASKS=str(ntasks),
            SLURM_NODELIST='cpu-node[001]', SLURM_NNODES='1',
            SLURM_JOB_ID='4242', SLURM_JOB_NAME=opts.get('job-name', '')))
        for rank in range(ntasks)
    ]
    rc = 0
    while procs:
        for p in list(procs):
            if p.poll() is None:
                continue
            procs.remove(p)
            if p.returncode != 0 and rc == 0:
                rc = p.returncode
                for q in procs:
                    q.kill()
        time.sleep(0.05)
    sys.exit(rc)
''')

SCONTROL = textwrap.dedent('''\
    #!{python}
    """Stand-in for Slurm's scontrol: `scontrol show hostname NODELIST`."""
    import json, os, sys
    with open(os.environ['FAKE_SLURM_LOG'], 'a') as f:
        f.write(json.dumps(dict(tool='scontrol', args=sys.argv[1:])) + '\\n')
    if sys.argv[1:3] in (['show', 'hostname'], ['show', 'hostnames']):
        print('127.0.0.1')
    else:
        sys.exit(1)
''')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_env(extra=None):
    env = cpu_ddp_env(extra)
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE',
                'LOCAL_RANK', 'LOCAL_WORLD_SIZE'):
        env.pop(key, None)
    for key in list(env):
        if key.startswith('SLURM_'):
            env.pop(key)
    # `python` in the launch scripts is this interpreter
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    return env


def write_config(tmp_path, name, dump_dir, **kwargs):
    data = make_cifar100(
        str(tmp_path / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=32,
        num_test=16)
    config = tmp_path / name
    config.write_text(
        tiny_distill_config(
            data,
            extra_hooks=[
                dict(type='mmreviewkd.RankStateDumpHook', out_dir=dump_dir)
            ],
            cpu_ddp=True,
            **kwargs))
    return str(config)


def load_dumps(dump_dir):
    import mmreviewkd  # noqa: F401
    return [
        torch.load(osp.join(dump_dir, f'rank{r}.pth'), map_location='cpu')
        for r in (0, 1)
    ]


def check_ranks_agree(dumps, backend='gloo'):
    for rank, dump in enumerate(dumps):
        assert dump['rank'] == rank and dump['world_size'] == 2
        assert dump['backend'] == backend
        assert dump['wrapper'] == 'MMDistributedDataParallel'
    params0, params1 = dumps[0]['params'], dumps[1]['params']
    assert set(params0) == set(params1)
    assert any(k.startswith('student.') for k in params0)
    assert any(k.startswith('connector.') for k in params0)
    for key in params0:
        assert torch.equal(params0[key], params1[key]), key
    # only the main process saves checkpoints (the hook counts the saves
    # each rank performs)
    assert dumps[0]['saves'] >= 1 and dumps[1]['saves'] == 0


def check_single_writer(work_dir, num_iters):
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(logs) == 1, logs  # rank 1 writes no log file
    records = logged_scalars(work_dir)
    assert [r['iter'] for r in records] == list(range(1, num_iters + 1))
    assert not [n for n in os.listdir(work_dir) if is_partial_file(n)]
    assert osp.isfile(osp.join(work_dir, 'student_final.pth'))
    return open(logs[0]).read()


@pytest.mark.slow
def test_dist_train_two_processes_on_cpu(tmp_path):
    dump_dir = str(tmp_path / 'dump')
    config = write_config(
        tmp_path, 'ddp.py', dump_dir, max_epochs=2, warmup_epochs=1)
    work_dir = str(tmp_path / 'work')
    proc = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2', '--work-dir',
        work_dir
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          env=launch_env(dict(PORT=str(free_port()))),
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'unused parameters' not in out.lower()

    dumps = load_dumps(dump_dir)
    check_ranks_agree(dumps)
    for dump in dumps:
        # DDP synchronises exactly the student + connector parameters: the
        # frozen teacher (requires_grad False) is invisible to its reducer,
        # and no find_unused_parameters was needed ...
        assert dump['find_unused_parameters'] is False
        assert dump['ddp_num_parameter_tensors'] == dump['trainable_tensors']
        assert dump['ddp_parameter_bytes'] == dump['trainable_bytes']
        assert dump['teacher_tensors'] > 0
        assert dump['teacher_requires_grad'] is False
        assert dump['teacher_ever_training'] is False
        # ... also in the warm-up epoch, whose distillation factor is 0
        assert dump['distill_weights'] == [(0, 0.0), (0, 0.0), (1, 1.0),
                                           (1, 1.0)]
    assert dumps[0]['saves'] == 2  # epoch_1.pth, epoch_2.pth

    log = check_single_writer(work_dir, num_iters=4)  # 32 / (2 x 8) x 2
    # the backend actually used is checked from the rank dumps (gloo)
    assert 'Distributed launcher: pytorch' in log
    import mmreviewkd  # noqa: F401
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu')
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
    for key, value in dumps[0]['params'].items():
        assert torch.equal(ckpt['state_dict'][key], value), key


@pytest.mark.slow
def test_slurm_train_through_mmengine_slurm_launcher(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', SRUN), ('scontrol', SCONTROL)):
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    slurm_log = tmp_path / 'slurm.jsonl'
    dump_dir = str(tmp_path / 'dump')
    config = write_config(
        tmp_path, 'slurm.py', dump_dir, max_epochs=1, warmup_epochs=0)
    work_dir = str(tmp_path / 'work')
    env = launch_env(
        dict(
            FAKE_SLURM_LOG=str(slurm_log),
            MASTER_PORT=str(free_port()),
            GPUS='2',
            GPUS_PER_NODE='2',
            CPUS_PER_TASK='1',
            SRUN_ARGS='--quiet'))
    env['PATH'] = str(bin_dir) + os.pathsep + env['PATH']
    proc = subprocess.run([
        'bash',
        osp.join(ROOT, 'tools', 'slurm_train.sh'), 'cpuq', 'rkd', config,
        work_dir, '--cfg-options', 'model.loss_weight=0.5'
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          env=env,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    calls = [json.loads(line) for line in slurm_log.read_text().splitlines()]
    srun = [c for c in calls if c['tool'] == 'srun']
    assert len(srun) == 1
    assert srun[0]['opts'] == {
        'partition': 'cpuq',
        'job-name': 'rkd',
        'gres': 'gpu:2',
        'ntasks': '2',
        'ntasks-per-node': '2',
        'cpus-per-task': '1',
        'kill-on-bad-exit': '1',
        'quiet': ''
    }
    command = srun[0]['command']
    assert command[:3] == ['python', '-u', osp.join(ROOT, 'tools', 'train.py')]
    assert command[3:] == [
        config, f'--work-dir={work_dir}', '--launcher=slurm', '--cfg-options',
        'model.loss_weight=0.5'
    ]
    # MMEngine's slurm launcher asked scontrol for the master address
    scontrol = [c['args'] for c in calls if c['tool'] == 'scontrol']
    assert scontrol == [['show', 'hostname', 'cpu-node[001]']] * 2

    dumps = load_dumps(dump_dir)
    check_ranks_agree(dumps)
    assert all(w == 0.5 for _, w in dumps[0]['distill_weights'])
    log = check_single_writer(work_dir, num_iters=2)
    assert 'Distributed launcher: slurm' in log
