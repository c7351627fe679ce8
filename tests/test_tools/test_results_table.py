# Copyright (c) mmreviewkd contributors. All rights reserved.
"""tools/analysis/results_table.py on hand-written MMEngine json logs."""
import importlib.util
import json
import math
import os
import os.path as osp
import shlex
import sys

import numpy as np
import pytest

from helpers.tool_runner import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# max_epochs 20, overridden to 3 by the plan's cfg_options
CONFIG = osp.join(ROOT, 'configs/quickstart/resnet8_1xb64-20e_digits.py')


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_log(work_dir, accuracies, timestamp='20260101_120000', iters=4):
    """A run's vis_data/scalars.json: per epoch ``iters`` training lines and
    one evaluation with the given top-1 (epochs 1, 2, ...)."""
    vis = osp.join(work_dir, timestamp, 'vis_data')
    os.makedirs(vis, exist_ok=True)
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        for e, acc in enumerate(accuracies, 1):
            for i in range(1, iters + 1):
                it = (e - 1) * iters + i
                f.write(json.dumps(dict(lr=0.1, data_time=0.01, loss=2.0 / it,
                                        time=0.1, epoch=e, iter=it,
                                        memory=100, step=it)) + '\n')
            f.write(json.dumps({'accuracy/top1': acc, 'accuracy/top5': 99.0,
                                'data_time': 0.01, 'time': 0.1,
                                'step': e}) + '\n')


PLAN = f'''
title = 'fake table'
baseline = dict(name='none', paper=74.3)
rows = [
    dict(name='RM', config={CONFIG!r},
         cfg_options={{'train_cfg.max_epochs': 3}}, paper=75.2),
    dict(name='RM+RLF', config={CONFIG!r},
         cfg_options={{'train_cfg.max_epochs': 3,
                       'model.backbone.depth': 8}}, paper=75.6),
]
'''


@pytest.fixture
def fake_runs(tmp_path):
    """2 rows x 3 seeds, RM+RLF seed 2 missing. Best epochs (90, 95, ...)
    are higher than the last ones, so taking the best would show."""
    root = str(tmp_path / 'runs')
    write_log(osp.join(root, 'RM', 'seed0'), [50.0, 80.0, 70.0])
    write_log(osp.join(root, 'RM', 'seed1'), [60.0, 90.0, 72.0])
    write_log(osp.join(root, 'RM', 'seed2'), [61.0, 88.0, 74.0])
    write_log(osp.join(root, 'RM+RLF', 'seed0'), [60.0, 95.0, 75.0])
    # an older run of seed 1 (finished, 99.0) and the latest one: latest wins
    write_log(
        osp.join(root, 'RM+RLF', 'seed1'), [1.0, 2.0, 99.0],
        timestamp='20250101_000000')
    write_log(osp.join(root, 'RM+RLF', 'seed1'), [60.0, 97.0, 76.0])
    plan = tmp_path / 'plan.py'
    plan.write_text(PLAN)
    return root, str(plan)


def table_rows(markdown):
    """``name -> cells`` of the Markdown table."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith('| ') and not line.startswith('| row '):
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            rows[cells[0]] = cells
    return rows


def test_table_last_epoch_stats_paper_and_missing(fake_runs, tmp_path):
    root, plan = fake_runs
    out = str(tmp_path / 'tables' / 'table.md')
    proc = run_tool('analysis/results_table.py', plan, '--work-dir', root,
                    '--out', out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        markdown = f.read()
    assert markdown in proc.stdout  # also printed
    rm_values = [70.0, 72.0, 74.0]  # the last epochs, not 80 / 90 / 88
    rlf_values = [75.0, 76.0]
    rows = table_rows(markdown)
    header = next(line for line in markdown.splitlines()
                  if line.startswith('| row |'))
    header = [c.strip() for c in header.strip().strip('|').split('|')]
    rm = dict(zip(header, rows['RM']))
    assert float(rm['mean']) == pytest.approx(np.mean(rm_values), abs=5e-3)
    assert float(rm['std']) == pytest.approx(
        np.std(rm_values, ddof=1), abs=5e-3)
    assert rm['min-max'] == '70.00-74.00'
    assert rm['n'] == '3/3'
    assert rm['per seed'] == 's0 70.00, s1 72.00, s2 74.00'
    assert rm['paper'] == '75.2'
    assert float(rm['diff']) == pytest.approx(np.mean(rm_values) - 75.2,
                                              abs=5e-3)
    assert float(rm['vs none']) == pytest.approx(
        np.mean(rm_values) - 74.3, abs=5e-3)
    rlf = dict(zip(header, rows['RM+RLF']))
    assert float(rlf['mean']) == pytest.approx(75.5, abs=5e-3)
    assert float(rlf['std']) == pytest.approx(
        np.std(rlf_values, ddof=1), abs=5e-3)
    assert rlf['n'] == '2/3' and 's2 missing' in rlf['notes']
    assert float(rlf['diff']) == pytest.approx(75.5 - 75.6, abs=5e-3)
    for best in ('80.00', '90.00', '88.00', '95.00', '97.00', '99.00'):
        assert best not in markdown
    assert 'LAST evaluation' in markdown and 'never the best' in markdown
    missing = markdown.split('Missing runs')[1]
    assert 'RM+RLF seed 2' in missing
    assert osp.join(root, 'RM+RLF', 'seed2') in missing

    # the JSON next to the Markdown
    with open(osp.join(str(tmp_path), 'tables', 'table.json')) as f:
        data = json.load(f)
    assert data['metric'] == 'accuracy/top1'
    assert data['seeds'] == [0, 1, 2]
    by_name = {r['name']: r for r in data['rows']}
    assert by_name['RM']['values'] == rm_values
    assert by_name['RM']['mean'] == pytest.approx(72.0)
    assert by_name['RM']['std'] == pytest.approx(2.0)
    assert (by_name['RM']['min'], by_name['RM']['max']) == (70.0, 74.0)
    assert by_name['RM']['paper'] == 75.2
    assert by_name['RM']['expected_step'] == 3
    assert [r['step'] for r in by_name['RM']['runs']] == [3, 3, 3]
    assert by_name['RM+RLF']['values'] == rlf_values
    assert by_name['RM+RLF']['std'] == pytest.approx(math.sqrt(0.5))
    assert [r['status'] for r in by_name['RM+RLF']['runs']] == \
        ['ok', 'ok', 'missing']
    assert by_name['RM+RLF']['runs'][1]['log'].endswith(
        osp.join('20260101_120000', 'vis_data', 'scalars.json'))
    assert data['baseline']['paper'] == 74.3


def test_unfinished_and_other_metric(fake_runs, tmp_path):
    from mmreviewkd.analysis.results import collect, load_plan
    root, plan = fake_runs
    # RM seed 2's latest run stopped after epoch 2 of 3
    write_log(
        osp.join(root, 'RM', 'seed2'), [61.0, 63.0],
        timestamp='20270101_000000')
    results = collect(load_plan(plan), root, [0, 1, 2])
    rm = results['rows'][0]
    assert [r['status'] for r in rm['runs']] == ['ok', 'ok', 'unfinished']
    assert rm['values'] == [70.0, 72.0]
    assert 'epoch 2 of 3' in rm['runs'][2]['note']
    top5 = collect(load_plan(plan), root, [0], metric='accuracy/top5',
                   scale=0.5)
    assert top5['rows'][0]['values'] == [49.5]
    # MMEngine names the final checkpoint in `last_checkpoint`: finished
    with open(osp.join(root, 'RM', 'seed2', 'last_checkpoint'), 'w') as f:
        f.write(osp.join(root, 'RM', 'seed2', 'epoch_3.pth'))
    rm = collect(load_plan(plan), root, [2])['rows'][0]
    assert rm['runs'][0]['status'] == 'ok' and rm['values'] == [63.0]


def test_iteration_based_logs_use_the_iteration_of_the_evaluation(tmp_path):
    """Iteration-based loops (COCO) log evaluations with step=0 by default
    (log_metric_by_epoch): the iteration of the training line before each
    evaluation is its step."""
    from mmreviewkd.analysis.logs import RunLog
    from mmreviewkd.analysis.results import collect_run
    work = tmp_path / 'coco'
    vis = work / '20260101_000000' / 'vis_data'
    os.makedirs(vis)
    lines = []
    for it in range(50, 501, 50):
        lines.append(dict(lr=0.01, loss=1.0, iter=it, step=it))
        if it % 200 == 0 or it == 500:
            lines.append({'coco/bbox_mAP': it / 1000, 'step': 0})
    (vis / 'scalars.json').write_text(
        ''.join(json.dumps(r) + '\n' for r in lines))
    run = RunLog(str(vis / 'scalars.json'))
    assert not run.by_epoch
    assert run.val_series('coco/bbox_mAP') == ([200, 400, 500],
                                               [0.2, 0.4, 0.5])
    assert run.last_eval('coco/bbox_mAP') == (500, 0.5)
    assert collect_run(str(work), 0, 'coco/bbox_mAP', 500).status == 'ok'
    result = collect_run(str(work), 0, 'coco/bbox_mAP', 1000)
    assert result.status == 'unfinished'
    assert 'iteration 500 of 1000' in result.note


def test_dry_run_prints_the_training_commands(fake_runs, tmp_path):
    root, plan = fake_runs
    tool = load_tool('results_table')
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = tool.main([
            plan, '--work-dir', root, '--run', '--dry-run', '--', '--amp',
            '--cfg-options', 'train_dataloader.batch_size=8'
        ])
    assert code == 0
    lines = [line for line in buf.getvalue().splitlines()
             if 'train.py' in line]
    assert len(lines) == 1, buf.getvalue()  # only the missing run
    cmd = shlex.split(lines[0].split(' > ')[0])
    assert cmd[0] == sys.executable
    assert cmd[1] == osp.join(ROOT, 'tools', 'train.py')
    assert cmd[2] == CONFIG
    assert cmd[3:5] == ['--work-dir', osp.join(root, 'RM+RLF', 'seed2')]
    opts = cmd[cmd.index('--cfg-options') + 1:]
    assert opts[:3] == ['randomness.seed=2', 'train_cfg.max_epochs=3',
                        'model.backbone.depth=8']
    assert cmd[-3:] == ['--amp', '--cfg-options',
                        'train_dataloader.batch_size=8']
    assert '--resume' in cmd
    assert lines[0].endswith(
        shlex.quote(osp.join(root, 'RM+RLF', 'seed2', 'train.log')) +
        ' 2>&1')


FAKE_TRAIN = '''
import json, os, sys
args = sys.argv[1:]
work_dir = args[args.index('--work-dir') + 1]
opts = args[args.index('--cfg-options') + 1:]
seed = int([o for o in opts if o.startswith('randomness.seed=')][0][16:])
print('fake training', work_dir)
if 'model.backbone.depth=8' in opts:
    sys.exit(3)
vis = os.path.join(work_dir, '20990101_000000', 'vis_data')
os.makedirs(vis)
with open(os.path.join(vis, 'scalars.json'), 'w') as f:
    for e in (1, 2, 3):
        f.write(json.dumps(dict(lr=0.1, loss=1.0, epoch=e, iter=e)) + '\\n')
        f.write(json.dumps({'accuracy/top1': 60.0 + seed + e, 'step': e})
                + '\\n')
'''


def test_run_trains_missing_reports_failures_and_exits_1(
        tmp_path, monkeypatch, capsys):
    from mmreviewkd.analysis import results
    root = str(tmp_path / 'runs')
    write_log(osp.join(root, 'RM', 'seed0'), [50.0, 80.0, 70.0])
    plan = tmp_path / 'plan.py'
    plan.write_text(PLAN)
    fake = tmp_path / 'fake_train.py'
    fake.write_text(FAKE_TRAIN)
    monkeypatch.setattr(results, 'train_script', lambda: str(fake))
    tool = load_tool('results_table')
    code = tool.main([str(plan), '--work-dir', root, '--seeds', '0', '1'])
    assert code == 0  # collecting only: nothing failed, missing are listed
    code = tool.main(
        [str(plan), '--work-dir', root, '--seeds', '0', '1', '--run'])
    out = capsys.readouterr().out
    assert code == 1  # RM+RLF (depth=8 in its options) fails in the fake
    # RM seed 0 was finished: only 3 of the 4 runs were trained
    assert out.count('[results_table] ') >= 3
    assert '1/3 training RM seed 1' in out
    with open(osp.join(root, 'results.json')) as f:
        data = json.load(f)
    rm, rlf = data['rows']
    assert rm['values'] == [70.0, 64.0]  # seed 1: 60 + 1 + 3
    assert [r['status'] for r in rlf['runs']] == ['failed', 'failed']
    assert 'exited with 3' in rlf['runs'][0]['note']
    log = osp.join(root, 'RM+RLF', 'seed0', 'train.log')
    assert 'fake training' in open(log).read()
    with open(osp.join(root, 'results.md')) as f:
        assert 'Failed runs' in f.read()


def test_bad_plans_are_one_line_errors(tmp_path):
    from mmreviewkd.analysis.results import format_option, load_plan
    from mmreviewkd.utils.errors import ConfigError
    bad = tmp_path / 'bad.py'
    bad.write_text('rows = [dict(name="a")]\n')
    with pytest.raises(ConfigError, match='`name` and `config`'):
        load_plan(str(bad))
    bad.write_text('rows = [dict(name="a", config="x.py", matrix=(0, 1))]\n')
    with pytest.raises(ConfigError, match='matrix'):
        load_plan(str(bad))
    bad.write_text('rows = [dict(name="a/b", config="x.py"), '
                   'dict(name="a b", config="x.py")]\n')
    with pytest.raises(ConfigError, match='share the directory'):
        load_plan(str(bad))
    bad.write_text('rows = [dict(name="a", config="x.py")]\n'
                   'baseline = "b"\n')
    with pytest.raises(ConfigError, match='baseline'):
        load_plan(str(bad))
    # rows generated in a loop: the review matrix from one base config
    loop = tmp_path / 'loop.py'
    loop.write_text(
        'rows = [dict(name=f"s{i}t{j}", config="x.py", matrix=(i, j),\n'
        '             cfg_options={"model.pairs": [(i, j)]})\n'
        '        for i in range(1, 5) for j in range(1, 5)]\n')
    plan = load_plan(str(loop))
    assert len(plan.rows) == 16 and plan.rows[6].matrix == (2, 3)
    assert format_option('model.pairs', [(2, 3)]) == 'model.pairs=[(2,3)]'
    # a baseline with a config is a measured row, first in the table
    base = tmp_path / 'base.py'
    base.write_text(
        'rows = [dict(name="a", config="x.py", matrix=(1, 1))]\n'
        'baseline = dict(name="alone", config="y.py", paper=69.1)\n')
    plan = load_plan(str(base))
    assert [r.name for r in plan.rows] == ['alone', 'a']
    assert plan.baseline == dict(name='alone', paper=69.1, row='alone')
    proc = run_tool('analysis/results_table.py', str(tmp_path / 'nope.py'),
                    '--work-dir', str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().count('\n') == 0
    assert proc.stderr.startswith('error: plan') and 'nope.py' in \
        proc.stderr


@pytest.mark.parametrize('table', ['table1', 'table6', 'table7'])
def test_the_shipped_plans_load(table):
    from mmreviewkd.analysis.results import load_plan
    plan = load_plan(
        osp.join(ROOT, 'configs', 'ablations', 'plans', f'{table}.py'))
    assert plan.title and plan.rows
    assert all(osp.isfile(r.config) for r in plan.rows)
    if table == 'table6':
        cells = {r.matrix: r.paper for r in plan.rows if r.matrix}
        assert len(cells) == 16 and cells[(3, 4)] == 50.4
        assert plan.baseline['row'] == plan.rows[0].name
