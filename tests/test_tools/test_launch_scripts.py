# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The launch scripts run the environment's python (``$PYTHON``, else
``python`` on PATH, else ``python3``) and pass every argument through
intact, paths with spaces included. A stand-in interpreter / ``srun``
records the argv it gets."""
import json
import os
import os.path as osp
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')
BASH = shutil.which('bash') or '/bin/bash'

RECORDER = textwrap.dedent('''\
    #!{python}
    """Stand-in for python / srun: append its name and argv to $ARGV_LOG."""
    import json, os, sys
    with open(os.environ['ARGV_LOG'], 'a') as f:
        f.write(json.dumps(dict(name=os.path.basename(sys.argv[0]),
                                argv=sys.argv[1:],
                                pythonpath=os.environ.get('PYTHONPATH'))))
        f.write('\\n')
''')


def make_recorder(path):
    with open(path, 'w') as f:
        f.write(RECORDER.format(python=sys.executable))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP)
    return str(path)


def records(log):
    with open(log) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def spaced(tmp_path):
    """A config and a work dir whose paths contain spaces."""
    cfg_dir = tmp_path / 'my configs'
    cfg_dir.mkdir()
    config = cfg_dir / 'tiny cfg.py'
    config.write_text('# not read by the stand-ins\n')
    return dict(
        config=str(config),
        work_dir=str(tmp_path / 'work dir'),
        ckpt=str(tmp_path / 'my ckpts' / 'epoch 1.pth'),
        log=str(tmp_path / 'argv.jsonl'))


def run_script(script, *args, env):
    proc = subprocess.run([BASH, osp.join(TOOLS, script), *args],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def base_env(log, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
    env.pop('PYTHON', None)
    env.pop('PYTHONPATH', None)
    env['ARGV_LOG'] = log
    env.update(extra)
    return env


def test_dist_train_passes_spaced_paths_to_torchrun(tmp_path, spaced):
    python = make_recorder(tmp_path / 'fake python')  # a spaced path too
    env = base_env(spaced['log'], PYTHON=python, PORT='29123')
    run_script(
        'dist_train.sh',
        spaced['config'],
        '2',
        '--work-dir',
        spaced['work_dir'],
        '--cfg-options',
        'a=1',
        'b=x y',
        env=env)
    (rec, ) = records(spaced['log'])
    assert rec['name'] == 'fake python'
    assert rec['argv'] == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
        '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29123',
        osp.join(TOOLS, 'train.py'), spaced['config'], '--launcher', 'pytorch',
        '--work-dir', spaced['work_dir'], '--cfg-options', 'a=1', 'b=x y'
    ]
    # the repository goes first on PYTHONPATH, with no empty entry
    assert rec['pythonpath'] == osp.join(TOOLS, '..')


def test_dist_test_passes_spaced_paths_to_torchrun(tmp_path, spaced):
    python = make_recorder(tmp_path / 'py')
    env = base_env(spaced['log'], PYTHON=python)
    run_script(
        'dist_test.sh',
        spaced['config'],
        spaced['ckpt'],
        '1',
        '--work-dir',
        spaced['work_dir'],
        env=env)
    (rec, ) = records(spaced['log'])
    assert rec['argv'][-7:] == [
        osp.join(TOOLS, 'test.py'), spaced['config'], spaced['ckpt'],
        '--launcher', 'pytorch', '--work-dir', spaced['work_dir']
    ]


def _bin_with(tmp_path, names):
    """A PATH directory with recorders called ``names`` and the few tools
    the scripts need."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        make_recorder(bin_dir / name)
    for tool in ('dirname', ):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


@pytest.mark.parametrize('names,expected', [(('python', 'python3'), 'python'),
                                            (('python3', ), 'python3')])
def test_default_python_is_python_on_path_then_python3(tmp_path, spaced, names,
                                                       expected):
    env = base_env(spaced['log'], PATH=_bin_with(tmp_path, names))
    run_script('dist_train.sh', spaced['config'], '1', env=env)
    (rec, ) = records(spaced['log'])
    assert rec['name'] == expected
    assert rec['argv'][-3:] == [spaced['config'], '--launcher', 'pytorch']


def test_slurm_train_passes_spaced_paths_through_srun(tmp_path, spaced):
    bin_dir = _bin_with(tmp_path, ['srun'])
    python = make_recorder(tmp_path / 'venv python')
    env = base_env(
        spaced['log'],
        PATH=bin_dir + os.pathsep + os.environ['PATH'],
        PYTHON=python,
        GPUS='2',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='3',
        SRUN_ARGS='--time=1:00:00 --qos=normal')
    run_script(
        'slurm_train.sh',
        'gpu part',
        'my job',
        spaced['config'],
        spaced['work_dir'],
        '--resume',
        '--cfg-options',
        'c=a b',
        env=env)
    (rec, ) = records(spaced['log'])
    assert rec['name'] == 'srun'
    assert rec['argv'] == [
        '-p', 'gpu part', '--job-name=my job', '--gres=gpu:2', '--ntasks=2',
        '--ntasks-per-node=2', '--cpus-per-task=3', '--kill-on-bad-exit=1',
        '--time=1:00:00', '--qos=normal', python, '-u',
        osp.join(TOOLS, 'train.py'), spaced['config'],
        f'--work-dir={spaced["work_dir"]}', '--launcher=slurm', '--resume',
        '--cfg-options', 'c=a b'
    ]
    assert rec['pythonpath'] == osp.join(TOOLS, '..')


def test_slurm_test_passes_spaced_paths_through_srun(tmp_path, spaced):
    bin_dir = _bin_with(tmp_path, ['srun', 'python'])
    env = base_env(
        spaced['log'], PATH=bin_dir + os.pathsep + os.environ['PATH'])
    run_script(
        'slurm_test.sh',
        'p',
        'j',
        spaced['config'],
        spaced['ckpt'],
        '--out',
        'x y.pkl',
        env=env)
    (rec, ) = records(spaced['log'])
    assert rec['argv'][-8:] == [
        'python', '-u',
        osp.join(TOOLS, 'test.py'), spaced['config'], spaced['ckpt'],
        '--launcher=slurm', '--out', 'x y.pkl'
    ]


@pytest.mark.parametrize('script,nargs', [('dist_train.sh', 2),
                                          ('dist_test.sh', 3),
                                          ('slurm_train.sh', 4),
                                          ('slurm_test.sh', 4)])
def test_too_few_arguments_print_the_usage(tmp_path, script, nargs):
    proc = subprocess.run([BASH, osp.join(TOOLS, script), 'x'],
                          capture_output=True,
                          text=True,
                          env=base_env(str(tmp_path / 'log')),
                          timeout=60)
    assert proc.returncode == 2
    assert f'usage: bash tools/{script}' in proc.stderr
    assert not osp.exists(tmp_path / 'log')
