# Copyright (c) mmreviewkd contributors. All rights reserved.
"""tools/analysis/benchmark_distill.py on a classification config (tiny)."""
import os.path as osp
import re
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))

import benchmark_distill  # noqa: E402


def test_benchmark_prints_medians_ratio_and_profile(capsys):
    cfg = osp.join(
        ROOT, 'configs/reviewkd/cifar100/'
        'reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py')
    ratio = benchmark_distill.main([
        cfg, '--batch-size', '4', '--iters', '2', '--warmup', '1',
        '--threads', '1', '--compare-original', '--profile', '3'
    ])
    out = capsys.readouterr().out
    assert 'fp32, batch 4 x 3 x 32 x 32' in out
    medians = dict(
        re.findall(r'^([abcd]\)) .*?median +([0-9.]+) ms', out, re.M))
    assert set(medians) == {'a)', 'b)', 'c)', 'd)'}
    a, b, c = (float(medians[k]) for k in ('a)', 'b)', 'c)'))
    printed = float(re.search(r'ratio c / \(a \+ b\) = ([0-9.]+)',
                              out).group(1))
    assert abs(printed - c / (a + b)) < 2e-3 and abs(ratio - printed) < 2e-3
    # the distiller runs both networks and the connector: never cheaper
    assert ratio > 0.8
    assert re.search(r'ratio d / \(a \+ b\) = [0-9.]+', out)
    assert 'Self CPU time total' in out  # the --profile table
    images = dict(
        re.findall(r'^([abcd]\)) .*?([0-9.]+) images/s', out, re.M))
    assert float(images['c)']) == pytest.approx(
        4 / c * 1000, rel=2e-3, abs=0.1)


def test_benchmark_amp_runs_under_autocast(capsys):
    cfg = osp.join(
        ROOT, 'configs/reviewkd/cifar100/'
        'reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py')
    ratio = benchmark_distill.main([
        cfg, '--batch-size', '2', '--iters', '1', '--warmup', '1',
        '--threads', '1', '--amp'
    ])
    out = capsys.readouterr().out
    assert 'autocast bfloat16, batch 2 x 3 x 32 x 32' in out
    assert ratio > 0
