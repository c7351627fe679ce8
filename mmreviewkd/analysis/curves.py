# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Training curves of one or several runs from MMEngine's json logs.

Default panels, each drawn when a run logged it: the task loss (the
``student.*`` losses of a distiller summed; ``loss`` of a run without
``student.*`` terms, e.g. the student trained alone), ``loss_hcl``, every
``loss_hcl.<level>``, every other ``loss_<name>`` term (extra distillation
terms), ``distill_weight`` (and ``distill_weight.<name>``) and the
validation metric. x is the iteration; evaluations sit at the last
iteration of their epoch (on an epoch axis of their own when that is not
logged).
"""
import fnmatch
import math
import os.path as osp
import re
from typing import List, Optional, Sequence, Tuple

from mmreviewkd.utils.errors import ConfigError

from .figures import new_figure, save_figure
from .logs import RunLog, resolve_log

TASK_LOSS = 'task_loss'
PREFERRED_METRICS = ('accuracy/top1', 'coco/bbox_mAP', 'coco/segm_mAP')


def run_label(path: str, log: str) -> str:
    """A run's default label: the work dir's name."""
    if osp.isdir(path):
        base = osp.abspath(path)
        if osp.isdir(osp.join(base, 'vis_data')):  # a <timestamp> dir
            return osp.basename(osp.dirname(base))
        return osp.basename(base)
    parts = osp.abspath(log).split(osp.sep)
    # WORK_DIR/<timestamp>/vis_data/scalars.json
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return parts[-4]
    return osp.splitext(parts[-1])[0]


def load_runs(paths: Sequence[str],
              labels: Optional[Sequence[str]] = None
              ) -> List[Tuple[str, RunLog]]:
    """``(label, log)`` of each run (a work dir: its latest run; a
    ``<timestamp>`` dir; or a json log file)."""
    if labels and len(labels) != len(paths):
        raise ConfigError(f'--labels gives {len(labels)} labels for '
                          f'{len(paths)} runs; give one per run.')
    runs = []
    for i, path in enumerate(paths):
        log = resolve_log(path)
        label = labels[i] if labels else run_label(path, log)
        runs.append((label, RunLog(log)))
    names = [label for label, _ in runs]
    return [(f'{label} ({i + 1})' if names.count(label) > 1 else label, run)
            for i, (label, run) in enumerate(runs)]


def _student_loss_keys(run: RunLog) -> List[str]:
    return [
        k for k in run.train_keys()
        if k.startswith('student.') and 'loss' in k
    ]


def task_loss_series(run: RunLog) -> Tuple[List[int], List[float], str]:
    """Iterations and task loss of a run, and what was summed."""
    keys = _student_loss_keys(run)
    if not keys:
        xs, ys = run.train_series('loss')
        return xs, ys, 'loss'
    xs, ys = [], []
    for i, r in enumerate(run.train):
        parts = [r[k] for k in keys if isinstance(r.get(k), (int, float))]
        if parts:
            xs.append(int(r.get('iter', r.get('step', i + 1))))
            ys.append(float(sum(parts)))
    return xs, ys, ' + '.join(keys)


def _level_order(key: str):
    m = re.match(r'^(.*)\.(\d+)$', key)
    return (m.group(1), int(m.group(2))) if m else (key, -1)


def available_keys(runs: Sequence[RunLog]) -> List[str]:
    """``task_loss``, then every training key, then every metric key."""
    keys = [TASK_LOSS]
    for run in runs:
        for k in run.train_keys() + run.val_keys():
            if k not in keys:
                keys.append(k)
    return keys


def default_panels(runs: Sequence[RunLog]) -> List[str]:
    """The default panels (see the module docstring) present in ``runs``."""
    train = set()
    val = []
    for run in runs:
        train.update(run.train_keys())
        val += [k for k in run.val_keys() if k not in val]
    panels = []
    if any(task_loss_series(r)[1] for r in runs):
        panels.append(TASK_LOSS)
    hcl = sorted((k for k in train if k == 'loss_hcl' or
                  k.startswith('loss_hcl.')), key=_level_order)
    others = sorted((k for k in train if k.startswith('loss_') and
                     not k.startswith('loss_hcl')), key=_level_order)
    panels += hcl + others
    panels += sorted((k for k in train if k == 'distill_weight' or
                      k.startswith('distill_weight.')), key=_level_order)
    metrics = [m for m in PREFERRED_METRICS if m in val] or val[:1]
    return panels + metrics


def select_panels(runs: Sequence[RunLog],
                  patterns: Optional[Sequence[str]]) -> List[str]:
    """The panels for ``--keys`` (names or shell patterns such as
    ``loss_hcl.*``), or the default ones."""
    if not patterns:
        return default_panels(runs)
    keys = available_keys(runs)
    panels = []
    for pattern in patterns:
        found = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
        if not found:
            raise ConfigError(f'--keys {pattern!r} matches nothing in the '
                              f'logs; logged keys: {", ".join(keys)}.')
        panels += [k for k in found if k not in panels]
    return panels


def _series(run: RunLog, key: str, by_epoch_axis: bool):
    if key == TASK_LOSS:
        xs, ys, _ = task_loss_series(run)
        return xs, ys
    if key in run.val_keys():
        if by_epoch_axis:
            return run.val_series(key)
        return run.val_series_by_iter(key)
    return run.train_series(key)


def plot_curves(paths: Sequence[str],
                out: str = 'curves.png',
                keys: Optional[Sequence[str]] = None,
                labels: Optional[Sequence[str]] = None,
                title: Optional[str] = None,
                vis_backends: Sequence[str] = (),
                vis_dir: Optional[str] = None) -> str:
    """Draw the curves of the runs at ``paths`` (one colour per run).

    Args:
        paths (Sequence[str]): Work dirs (latest run), ``<timestamp>`` dirs
            or json log files.
        out (str): The PNG to write.
        keys (Sequence[str], optional): Panels: log keys or patterns,
            ``task_loss``; default :func:`default_panels`.
        labels (Sequence[str], optional): Legend labels, one per run
            (default: the work dir names).

    Returns:
        str: ``out``.
    """
    runs = load_runs(paths, labels)
    logs = [run for _, run in runs]
    panels = select_panels(logs, keys)
    if not panels:
        raise ConfigError(f'nothing to plot: the logs of '
                          f'{", ".join(paths)} have no training or '
                          f'validation values.')
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.2 * ncols, 3.0 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours = [f'C{i % 10}' for i in range(len(runs))]
    handles = {}
    metric_keys = set(k for run in logs for k in run.val_keys())
    for ax, key in zip(axes, panels):
        is_val = key in metric_keys and key != TASK_LOSS
        by_epoch = is_val and any(
            key in run.val_keys() and run.val_series_by_iter(key) is None
            for run in logs)
        for (label, run), colour in zip(runs, colours):
            series = _series(run, key, by_epoch)
            if not series or not series[0]:
                continue
            xs, ys = series
            style = dict(marker='o', markersize=3) if is_val else {}
            line, = ax.plot(xs, ys, color=colour, linewidth=1.2,
                            label=label, **style)
            handles.setdefault(label, line)
        name = 'task loss' if key == TASK_LOSS else key
        if key == TASK_LOSS:
            sums = {task_loss_series(r)[2] for r in logs}
            name += f' ({" | ".join(sorted(sums))})' if len(sums) == 1 \
                and '+' in next(iter(sums)) else ''
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('epoch' if by_epoch else 'iteration', fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc='lower center',
                   ncol=min(len(handles), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / (3.0 * nrows + 0.6), 1, 1))
    return save_figure(fig, out, vis_backends=vis_backends, vis_dir=vis_dir)
