# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Run ``tools/*.py`` in a subprocess and read what they logged."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# sitecustomize.py that lets MMEngine's launchers start without a GPU
CPU_DDP_SHIM = osp.join(ROOT, 'tests', 'cpu_ddp')


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for tool subprocesses: one OpenMP thread each (the
    test machines have 2 cores), no debug tracebacks, the repo and the
    test ``helpers`` importable."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    env.pop('MMREVIEWKD_DEBUG', None)
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT, osp.join(ROOT, 'tests'),
         env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def cpu_ddp_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """:func:`tool_env` for distributed runs on CPU: with ``tests/cpu_ddp``
    on ``PYTHONPATH``, MMEngine's pytorch / slurm launchers skip their
    ``torch.cuda.set_device`` call when there is no GPU. The configs of such
    runs also need the gloo backend and DDP without device ids
    (``tiny_distill_config(..., cpu_ddp=True)``)."""
    env = tool_env(extra)
    env['PYTHONPATH'] = CPU_DDP_SHIM + os.pathsep + env['PYTHONPATH']
    return env


def run_tool(tool: str,
             *args: str,
             env: Optional[Dict[str, str]] = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python tools/<tool> *args`` from the repository root.

    Returns:
        subprocess.CompletedProcess: With text ``stdout`` / ``stderr``; the
        caller checks ``returncode``.
    """
    cmd = [sys.executable, osp.join(ROOT, 'tools', tool), *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=tool_env(env),
        timeout=timeout)


def logged_scalars(work_dir: str, key: str = 'loss') -> List[dict]:
    """Training records of the newest run in ``work_dir`` (one dict per
    logged iteration, from ``<timestamp>/vis_data/scalars.json``)."""
    files = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        return []
    with open(files[-1]) as f:
        records = [json.loads(line) for line in f]
    return [r for r in records if key in r]
