# Copyright (c) mmreviewkd contributors. All rights reserved.
"""A results table over seeds: plan, (optionally) train, collect, report.

A *plan* is a Python file that defines ``rows`` (and optionally ``title``,
``baseline`` and ``seeds``)::

    title = 'Table 7: WRN40-2 -> WRN16-2'
    baseline = 'none'                       # a row name, or
    # baseline = dict(name='student alone', paper=73.26)
    rows = [
        dict(name='none', config='configs/baselines/cifar100/'
             'wrn16-2_8xb16-240e_cifar100.py', paper=74.3),
        dict(name='RM+RLF+ABF+HCL', config='configs/reviewkd/cifar100/'
             'reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py',
             cfg_options={'model.loss_weight': 5.0}, paper=76.2),
    ]

Rows may be generated in a loop (``matrix=(i, j)`` marks a cell of a review
matrix, see :mod:`.review_matrix`). Row ``r`` with seed ``k`` is trained in
``WORK_ROOT/<r>/seed<k>`` (``<r>`` is the name with characters other than
letters, digits and ``._+-`` replaced by ``_``, or the row's ``dir``).

The value of a run is the metric at the **last** evaluation of its latest
run directory (the final epoch), never the best one.
"""
import argparse
import copy
import math
import os
import os.path as osp
import re
import runpy
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmreviewkd.utils.errors import ConfigError

from .logs import RunLog, latest_run_log

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_ROW_KEYS = ('name', 'config', 'cfg_options', 'paper', 'matrix', 'dir')
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_METRIC = 'accuracy/top1'


def train_script() -> str:
    """``tools/train.py`` of this checkout (or of the installed package's
    ``.mim`` folder)."""
    for root in (_REPO, osp.join(osp.dirname(osp.dirname(__file__)),
                                 '.mim')):
        path = osp.join(root, 'tools', 'train.py')
        if osp.isfile(path):
            return path
    return osp.join(_REPO, 'tools', 'train.py')


def dir_name(name: str) -> str:
    """The directory name of a row: characters other than letters, digits
    and ``._+-`` become ``_``."""
    return re.sub(r'[^A-Za-z0-9._+-]', '_', name).strip('.') or '_'


@dataclass
class PlanRow:
    """One row of a plan (see the module docstring)."""
    name: str
    config: str
    cfg_options: Dict[str, Any] = field(default_factory=dict)
    paper: Optional[float] = None
    matrix: Optional[Tuple[int, int]] = None
    dir: str = ''


@dataclass
class Plan:
    """A loaded plan: rows, title, baseline and default seeds."""
    path: str
    rows: List[PlanRow]
    title: str = ''
    #: ``dict(name=..., paper=...)``; ``row`` names the measured row
    baseline: Optional[dict] = None
    seeds: Optional[List[int]] = None


def _number(value, what: str, path: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f'plan {path}: {what} must be a number, got '
                          f'{value!r}.')
    return float(value)


def _resolve_config(config: str, plan_dir: str) -> str:
    """A config path as given if it exists (or is a ``pkg::`` reference),
    else relative to the plan's folder or to the repository root."""
    if '::' in config or osp.isabs(config) or osp.exists(config):
        return config
    for root in (plan_dir, _REPO):
        candidate = osp.join(root, config)
        if osp.exists(candidate):
            return candidate
    return config


def load_plan_rows(rows: Sequence[Any], path: str, plan_dir: str,
                   dirs: Dict[str, str]) -> List[PlanRow]:
    """Check plan rows (dicts) and make :class:`PlanRow` s; ``dirs`` maps
    the directories taken so far to their rows."""
    out: List[PlanRow] = []
    names = {v for v in dirs.values()}
    for i, row in enumerate(rows):
        where = f'rows[{i}]'
        if not isinstance(row, dict) or 'name' not in row \
                or 'config' not in row:
            raise ConfigError(f'plan {path}: {where} must be a dict with '
                              f'`name` and `config`, got {row!r}.')
        unknown = sorted(set(row) - set(_ROW_KEYS))
        if unknown:
            raise ConfigError(f'plan {path}: {where} ({row["name"]!r}) has '
                              f'unknown keys {unknown}; use '
                              f'{", ".join(_ROW_KEYS)}.')
        name = str(row['name'])
        if name in names:
            raise ConfigError(f'plan {path}: two rows are named {name!r}; '
                              f'row names must be unique.')
        names.add(name)
        options = row.get('cfg_options') or {}
        if not isinstance(options, dict):
            raise ConfigError(f'plan {path}: {where} ({name!r}) cfg_options '
                              f'must be a dict of key: value, got '
                              f'{options!r}.')
        matrix = row.get('matrix')
        if matrix is not None:
            if not (isinstance(matrix, (list, tuple)) and len(matrix) == 2
                    and all(isinstance(v, int) and v >= 1 for v in matrix)):
                raise ConfigError(
                    f'plan {path}: {where} ({name!r}) matrix must be '
                    f'(student stage, teacher stage), both >= 1, got '
                    f'{matrix!r}.')
            matrix = (int(matrix[0]), int(matrix[1]))
        folder = str(row.get('dir') or dir_name(name))
        if folder in dirs:
            raise ConfigError(
                f'plan {path}: rows {dirs[folder]!r} and {name!r} would '
                f'share the directory {folder!r}; give one of them '
                f'dir=... or another name.')
        dirs[folder] = name
        out.append(
            PlanRow(
                name=name,
                config=_resolve_config(str(row['config']), plan_dir),
                cfg_options=dict(options),
                paper=_number(row.get('paper'), f'{where} paper', path),
                matrix=matrix,
                dir=folder))
    return out


def load_plan(path: str) -> Plan:
    """Run the plan file and check its ``rows``.

    Raises:
        FileNotFoundError: No such file.
        ConfigError: ``rows`` is missing or malformed (names the row).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'plan {path!r} does not exist.')
    try:
        ns = runpy.run_path(path)
    except SyntaxError as e:
        raise ConfigError(f'plan {path}: syntax error at line {e.lineno}: '
                          f'{(e.text or "").strip()}') from None
    rows = ns.get('rows')
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ConfigError(f'plan {path} defines no `rows`; write rows = '
                          f'[dict(name=..., config=..., paper=...), ...].')
    plan_dir = osp.dirname(osp.abspath(path))
    dirs: Dict[str, str] = {}
    out = load_plan_rows(rows, path, plan_dir, dirs)
    names = {r.name for r in out}
    baseline = ns.get('baseline')
    if isinstance(baseline, str):
        if baseline not in names:
            raise ConfigError(f'plan {path}: baseline {baseline!r} is not a '
                              f'row name; name a row or give baseline = '
                              f'dict(name=..., paper=...).')
        row = next(r for r in out if r.name == baseline)
        baseline = dict(name=baseline, paper=row.paper, row=baseline)
    elif isinstance(baseline, dict):
        if 'name' not in baseline:
            raise ConfigError(f'plan {path}: baseline must be dict(name=..., '
                              f'paper=...) or a row name.')
        name = str(baseline['name'])
        if baseline.get('config') is not None and name not in names:
            # a baseline with a config is trained and collected like a row
            extra = load_plan_rows([dict(baseline)], path, plan_dir, dirs)
            out.insert(0, extra[0])
            names.add(name)
        baseline = dict(
            name=name,
            paper=_number(baseline.get('paper'), 'baseline paper', path),
            row=name if name in names else None)
    elif baseline is not None:
        raise ConfigError(f'plan {path}: baseline must be a row name or '
                          f'dict(name=..., paper=...), got {baseline!r}.')
    seeds = ns.get('seeds')
    return Plan(
        path=path,
        rows=out,
        title=str(ns.get('title') or ''),
        baseline=baseline,
        seeds=[int(s) for s in seeds] if seeds is not None else None)


# ------------------------------------------------------------------ commands
def format_option(key: str, value: Any) -> str:
    """``key=value`` as MMEngine's ``--cfg-options`` parses it back."""

    def fmt(v):
        if isinstance(v, (list, tuple)):
            inner = ','.join(fmt(x) for x in v)
            return f'[{inner}]' if isinstance(v, list) else f'({inner})'
        if isinstance(v, dict):
            raise ConfigError(
                f'cfg_options {key!r}: a dict value cannot be passed on the '
                f'command line; set its keys one by one ({key}.<sub>=...).')
        return str(v)

    return f'{key}={fmt(value)}'


def run_dir(work_root: str, row: PlanRow, seed: int) -> str:
    """``WORK_ROOT/<row dir>/seed<k>``."""
    return osp.join(work_root, row.dir, f'seed{seed}')


def train_command(row: PlanRow,
                  seed: int,
                  work_root: str,
                  extra_args: Sequence[str] = (),
                  python: str = sys.executable,
                  script: Optional[str] = None) -> List[str]:
    """The ``tools/train.py`` command of one (row, seed).

    ``--resume`` continues an interrupted run from its newest complete
    checkpoint and trains from scratch when there is none.
    """
    options = [f'randomness.seed={seed}'] + [
        format_option(k, v) for k, v in row.cfg_options.items()
    ]
    return [
        python, script or train_script(), row.config, '--work-dir',
        run_dir(work_root, row, seed), '--resume', '--cfg-options', *options,
        *extra_args
    ]


def _cfg_options_of(args: Sequence[str]) -> List[str]:
    """The ``k=v`` items of every ``--cfg-options`` in ``args``."""
    found, inside = [], False
    for arg in args:
        if arg.startswith('--'):
            inside = arg == '--cfg-options'
        elif inside:
            found.append(arg)
    return found


_CONFIGS: Dict[str, Any] = {}  # loaded once per process


def expected_last_step(
        row: PlanRow,
        extra_args: Sequence[str] = ()) -> Tuple[Optional[int], str]:
    """The step of a finished run's last evaluation: ``max_epochs`` of an
    epoch-based ``train_cfg``, ``max_iters`` of an iteration-based one.

    Returns:
        tuple: ``(step, note)``; ``step`` is None (and ``note`` says why)
        when the config cannot be loaded here.
    """
    from mmengine.config import DictAction

    from mmreviewkd.utils.config_check import load_config
    try:
        if row.config not in _CONFIGS:
            _CONFIGS[row.config] = load_config(row.config)
        cfg = copy.deepcopy(_CONFIGS[row.config])
        items = [format_option(k, v) for k, v in row.cfg_options.items()]
        items += _cfg_options_of(extra_args)
        if items:
            parser = argparse.ArgumentParser()
            parser.add_argument('--o', nargs='+', action=DictAction)
            cfg.merge_from_dict(parser.parse_args(['--o', *items]).o)
    except Exception as e:  # noqa: BLE001  (collecting needs no config)
        first = (str(e).splitlines() or [''])[0]
        return None, f'config not loaded ({type(e).__name__}: {first})'
    train_cfg = cfg.get('train_cfg') or {}
    for key in ('max_epochs', 'max_iters'):
        if train_cfg.get(key) is not None:
            return int(train_cfg[key]), ''
    return None, 'config has no train_cfg.max_epochs / max_iters'


# ------------------------------------------------------------------- collect
@dataclass
class RunResult:
    """One (row, seed): ``status`` is ``'ok'``, ``'missing'`` (no log),
    ``'no-metric'`` (a log without the metric), ``'unfinished'`` (last
    evaluation before the end of the schedule) or ``'failed'`` (training
    exited non-zero in this invocation)."""
    seed: int
    run_dir: str
    status: str
    value: Optional[float] = None
    step: Optional[int] = None
    log: Optional[str] = None
    note: str = ''


def collect_run(directory: str,
                seed: int,
                metric: str,
                expected_step: Optional[int] = None) -> RunResult:
    """Read the last evaluation of ``metric`` in the latest run of
    ``directory`` (a ``tools/train.py`` work dir)."""
    log = latest_run_log(directory)
    if log is None:
        return RunResult(seed, directory, 'missing', note='no log')
    run = RunLog(log)
    last = run.last_eval(metric)
    if last is None:
        found = ', '.join(run.val_keys()[:4]) or 'no evaluation'
        return RunResult(
            seed,
            directory,
            'no-metric',
            log=log,
            note=f'no {metric} in {log} ({found}): still training, stopped '
            f'before its first evaluation, or another --metric')
    step, value = last
    if expected_step is not None and step < expected_step \
            and _last_checkpoint_step(directory) != expected_step:
        unit = 'epoch' if run.by_epoch else 'iteration'
        return RunResult(
            seed,
            directory,
            'unfinished',
            value=value,
            step=step,
            log=log,
            note=f'last evaluation at {unit} {step} of {expected_step} '
            f'({metric} {value:.2f}; {log})')
    return RunResult(seed, directory, 'ok', value=value, step=step, log=log)


def _last_checkpoint_step(directory: str) -> Optional[int]:
    """N of the ``epoch_N.pth`` / ``iter_N.pth`` that MMEngine's
    ``last_checkpoint`` file names (written at the end of training), or
    None."""
    try:
        with open(osp.join(directory, 'last_checkpoint')) as f:
            name = osp.basename(f.read().strip())
    except OSError:
        return None
    found = re.fullmatch(r'(?:epoch|iter)_(\d+)\.pth', name)
    return int(found.group(1)) if found else None


def summarize(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean, sample standard deviation (n - 1; None below 2 values), min
    and max."""
    values = list(values)
    if not values:
        return dict(mean=None, std=None, min=None, max=None)
    return dict(
        mean=statistics.mean(values),
        std=statistics.stdev(values) if len(values) > 1 else None,
        min=min(values),
        max=max(values))


def collect(plan: Plan,
            work_root: str,
            seeds: Sequence[int],
            metric: str = DEFAULT_METRIC,
            extra_args: Sequence[str] = (),
            failed: Optional[Dict[Tuple[str, int], str]] = None,
            scale: float = 1.0) -> dict:
    """Collect every (row, seed) of ``plan`` under ``work_root``.

    Args:
        plan (Plan): The plan.
        work_root (str): ``WORK_ROOT``.
        seeds (Sequence[int]): Seeds to collect.
        metric (str): Validation metric key. Defaults to ``accuracy/top1``.
        extra_args (Sequence[str]): Extra ``tools/train.py`` arguments
            (their ``--cfg-options`` decide the end of the schedule).
        failed (dict, optional): ``(row name, seed) -> note`` of runs whose
            training failed in this invocation.
        scale (float): Multiplier of the logged values (e.g. 100 for COCO
            mAPs logged as fractions against the paper's AP in %).

    Returns:
        dict: The results (written as JSON by :func:`write_results`): per
        row the runs, the values of the finished ones and their
        statistics.
    """
    failed = failed or {}
    rows = []
    for row in plan.rows:
        expected, config_note = expected_last_step(row, extra_args)
        runs = []
        for seed in seeds:
            result = collect_run(
                run_dir(work_root, row, seed), seed, metric, expected)
            if result.value is not None:
                result.value *= scale
            if (row.name, seed) in failed:
                result.status = 'failed'
                result.note = failed[(row.name, seed)]
            runs.append(result)
        values = [r.value for r in runs if r.status == 'ok']
        stats = summarize(values)
        diff = stats['mean'] - row.paper if stats['mean'] is not None \
            and row.paper is not None else None
        rows.append(
            dict(
                name=row.name,
                config=row.config,
                cfg_options=row.cfg_options,
                paper=row.paper,
                matrix=list(row.matrix) if row.matrix else None,
                dir=osp.join(work_root, row.dir),
                expected_step=expected,
                config_note=config_note,
                runs=[r.__dict__ for r in runs],
                values=values,
                n=len(values),
                diff=diff,
                **stats))
    baseline = None
    if plan.baseline is not None:
        baseline = dict(plan.baseline)
        measured = next((r for r in rows if r['name'] == baseline['row']),
                        None) if baseline.get('row') else None
        baseline['mean'] = measured['mean'] if measured else None
        baseline['value'] = baseline['mean'] if baseline['mean'] is not None \
            else baseline.get('paper')
        for r in rows:
            r['vs_baseline'] = r['mean'] - baseline['value'] if r[
                'mean'] is not None and baseline['value'] is not None \
                else None
    return dict(
        title=plan.title,
        plan=plan.path,
        metric=metric,
        scale=scale,
        work_dir=work_root,
        seeds=list(seeds),
        baseline=baseline,
        rows=rows)


# -------------------------------------------------------------------- output
def _f(value: Optional[float], fmt: str = '.2f') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, fmt)


def _paper(value: Optional[float]) -> str:
    """A paper number with one or two decimals (69.1, 75.63)."""
    if value is None:
        return '-'
    text = f'{value:.2f}'
    return text[:-1] if text.endswith('0') else text


def _problems(results: dict) -> Dict[str, List[str]]:
    kinds: Dict[str, List[str]] = {
        'missing': [],
        'failed': [],
        'unfinished': []
    }
    for row in results['rows']:
        for run in row['runs']:
            status = run['status']
            if status == 'ok':
                continue
            kind = 'missing' if status in ('missing', 'no-metric') \
                else status
            what = run['note']
            if status == 'missing':
                what = f'no log under {run["run_dir"]}'
            kinds[kind].append(f'{row["name"]} seed {run["seed"]}: {what}')
    return kinds


def to_markdown(results: dict) -> str:
    """The table, its footer and the lists of missing, failed and
    unfinished runs, in Markdown."""
    metric = results['metric']
    baseline = results.get('baseline')
    lines = []
    if results.get('title'):
        lines += [f'## {results["title"]}', '']
    head = ['row', 'mean', 'std', 'min-max', 'n', 'per seed', 'paper',
            'diff']
    if baseline is not None:
        head.append(f'vs {baseline["name"]}')
    head.append('notes')
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    total = len(results['seeds'])
    for row in results['rows']:
        per_seed = ', '.join(f's{r["seed"]} {r["value"]:.2f}'
                             for r in row['runs'] if r['status'] == 'ok')
        span = f'{_f(row["min"])}-{_f(row["max"])}' if row['n'] else '-'
        notes = [
            f's{r["seed"]} {r["status"]}' for r in row['runs']
            if r['status'] != 'ok'
        ]
        cells = [
            row['name'],
            _f(row['mean']),
            _f(row['std']), span, f'{row["n"]}/{total}', per_seed or '-',
            _paper(row['paper']),
            _f(row['diff'], '+.2f')
        ]
        if baseline is not None:
            cells.append(_f(row.get('vs_baseline'), '+.2f'))
        cells.append(', '.join(notes))
        lines.append('| ' + ' | '.join(c.replace('|', '/') for c in cells) +
                     ' |')
    lines.append('')
    scaled = f' x {results["scale"]:g}' if results.get('scale', 1) != 1 \
        else ''
    lines.append(
        f'Each value is `{metric}`{scaled} at the LAST evaluation of the '
        f'latest run in `<work dir>/<row>/seed<k>` (the final epoch), never '
        f'the best epoch: nothing is selected on the evaluation set. '
        f'mean and std (sample standard deviation, n - 1) over the finished '
        f'seeds, min-max over them; n = finished seeds / seeds asked for; '
        f'diff = mean - paper.')
    if baseline is not None:
        source = 'measured mean' if baseline.get('mean') is not None \
            else 'paper'
        lines += ['', f'vs {baseline["name"]}: mean - '
                  f'{_f(baseline.get("value"))} ({source}).']
    lines += ['', f'Work dir: `{results["work_dir"]}`; seeds '
              f'{" ".join(str(s) for s in results["seeds"])}.']
    for kind, items in _problems(results).items():
        if items:
            lines += ['', f'{kind.capitalize()} runs (not in the '
                      f'statistics):']
            lines += [f'- {item}' for item in items]
    notes = [
        f'{r["name"]}: {r["config_note"]}; finished runs not checked '
        f'against the schedule' for r in results['rows'] if r['config_note']
    ]
    if notes:
        lines += ['', 'Notes:'] + [f'- {n}' for n in notes]
    return '\n'.join(lines) + '\n'


def json_path(markdown_path: str) -> str:
    """The JSON written next to the Markdown table (same stem)."""
    return osp.splitext(markdown_path)[0] + '.json'


def write_results(results: dict, out: str) -> Tuple[str, str]:
    """Write the Markdown table to ``out`` and the JSON next to it.

    Returns:
        tuple[str, str]: The two paths.
    """
    import json
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    with open(out, 'w') as f:
        f.write(to_markdown(results))
    path = json_path(out)
    with open(path, 'w') as f:
        json.dump(results, f, indent=1)
    return out, path


# ----------------------------------------------------------------------- run
def runs_to_train(plan: Plan, work_root: str, seeds: Sequence[int],
                  metric: str,
                  extra_args: Sequence[str] = ()) -> List[Tuple[PlanRow,
                                                                int]]:
    """The (row, seed) pairs without a finished run."""
    todo = []
    for row in plan.rows:
        expected, _ = expected_last_step(row, extra_args)
        for seed in seeds:
            result = collect_run(
                run_dir(work_root, row, seed), seed, metric, expected)
            if result.status != 'ok':
                todo.append((row, seed))
    return todo


def train_missing(plan: Plan,
                  work_root: str,
                  seeds: Sequence[int],
                  metric: str = DEFAULT_METRIC,
                  extra_args: Sequence[str] = (),
                  command: Optional[List[str]] = None,
                  log_name: str = 'train.log',
                  echo=print) -> Dict[Tuple[str, int], str]:
    """Train every (row, seed) without a finished run, one after another.

    Each run's output goes to ``<run dir>/<log_name>``; a failing run is
    reported and the next one starts.

    Args:
        command (list[str], optional): Replaces ``[python,
            tools/train.py]`` (tests use a fake trainer).

    Returns:
        dict: ``(row name, seed) -> note`` of the runs that failed.
    """
    missing = [r.config for r in plan.rows
               if '::' not in r.config and not osp.isfile(r.config)]
    if missing:
        raise FileNotFoundError(f'plan {plan.path}: config {missing[0]!r} '
                                f'does not exist (paths are relative to the '
                                f'current directory, the plan or the '
                                f'repository).')
    todo = runs_to_train(plan, work_root, seeds, metric, extra_args)
    failed = {}
    for i, (row, seed) in enumerate(todo, 1):
        cmd = train_command(row, seed, work_root, extra_args)
        if command is not None:
            cmd = list(command) + cmd[2:]
        directory = run_dir(work_root, row, seed)
        os.makedirs(directory, exist_ok=True)
        log = osp.join(directory, log_name)
        echo(f'[results_table] {i}/{len(todo)} training {row.name} seed '
             f'{seed} (log: {log})')
        with open(log, 'a') as f:
            f.write('$ ' + ' '.join(cmd) + '\n')
            f.flush()
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        if code != 0:
            failed[(row.name, seed)] = f'training exited with {code}; ' \
                f'log: {log}'
            echo(f'[results_table]   FAILED (exit {code}); log: {log}')
    return failed
