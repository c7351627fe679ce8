# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Read MMEngine's json logs.

Every run of ``tools/train.py`` writes ``WORK_DIR/<timestamp>/vis_data/
scalars.json`` (and the same lines in ``<timestamp>.json`` next to it): one
JSON object per line. Training lines have ``iter`` (global, 1-based),
``epoch`` (epoch-based loops), ``lr`` and the logged losses; validation
lines have the metrics (``accuracy/top1``, ``coco/bbox_mAP``, ...) and
``step``, the epoch of the evaluation (the iteration for iteration-based
loops).
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

from mmreviewkd.utils.errors import DataError

#: keys of validation lines that are not metrics
NON_METRIC_KEYS = ('data_time', 'time', 'step', 'epoch', 'iter', 'memory')


def log_of_run_dir(run_dir: str) -> Optional[str]:
    """The json log of one ``<timestamp>`` directory, or None."""
    vis = osp.join(run_dir, 'vis_data')
    for name in ('scalars.json', osp.basename(run_dir.rstrip(os.sep)) +
                 '.json'):
        path = osp.join(vis, name)
        if osp.isfile(path):
            return path
    return None


def latest_run_log(work_dir: str) -> Optional[str]:
    """The json log of the latest ``<timestamp>`` run directory of a work
    dir (timestamps sort by name), or None when no run has written one.

    Directories without a training log (e.g. ``tools/test.py`` runs, which
    write no ``vis_data``) are skipped.
    """
    if not osp.isdir(work_dir):
        return None
    logs = []
    for name in sorted(os.listdir(work_dir)):
        run_dir = osp.join(work_dir, name)
        if osp.isdir(run_dir):
            log = log_of_run_dir(run_dir)
            if log is not None:
                logs.append(log)
    return logs[-1] if logs else None


def resolve_log(path: str) -> str:
    """A json log from a file, a ``<timestamp>`` directory or a work dir
    (its latest run).

    Raises:
        FileNotFoundError: Nothing there, or no log under the directory.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(
            f'{path!r} does not exist; give a work dir of tools/train.py or '
            f'a vis_data/scalars.json file.')
    log = log_of_run_dir(path) or latest_run_log(path)
    if log is None:
        raise FileNotFoundError(
            f'no MMEngine json log under {path!r} (expected '
            f'{osp.join(path, "<timestamp>", "vis_data", "scalars.json")}); '
            f'give the work dir of a tools/train.py run.')
    return log


def read_records(path: str) -> List[dict]:
    """The JSON objects of a log, one per line. A broken last line (a run
    killed while writing) is ignored.

    Raises:
        DataError: A line before the last is not a JSON object.
    """
    with open(path) as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise DataError(
                f'{path}: line {i + 1} is not JSON ({e.msg}); this is not an '
                f'MMEngine json log (vis_data/scalars.json).') from None
        if not isinstance(record, dict):
            raise DataError(f'{path}: line {i + 1} is not a JSON object; '
                            f'this is not an MMEngine json log.')
        records.append(record)
    return records


def _is_train_record(record: dict) -> bool:
    return 'iter' in record or 'lr' in record or any(
        k.startswith('loss') for k in record)


class RunLog:
    """The training and validation lines of one json log.

    Args:
        path (str): The log file.
        records (list[dict], optional): Its lines, if read already.
    """

    def __init__(self, path: str,
                 records: Optional[List[dict]] = None) -> None:
        self.path = path
        records = read_records(path) if records is None else records
        self.train: List[dict] = []
        self.val: List[dict] = []
        #: per validation line, the iteration of the training line before it
        self.val_iters: List[Optional[int]] = []
        last_iter = None
        for r in records:
            if _is_train_record(r):
                self.train.append(r)
                if _is_number(r.get('iter')):
                    last_iter = int(r['iter'])
            else:
                self.val.append(r)
                self.val_iters.append(last_iter)
        #: epoch-based training: validation ``step`` is an epoch
        self.by_epoch = any('epoch' in r for r in self.train)

    @classmethod
    def from_path(cls, path: str) -> 'RunLog':
        """The log of a work dir (latest run), a run dir or a file."""
        return cls(resolve_log(path))

    def train_keys(self) -> List[str]:
        """Numeric keys of the training lines, in first-seen order."""
        return _numeric_keys(self.train)

    def val_keys(self) -> List[str]:
        """Metric keys of the validation lines, in first-seen order."""
        return [
            k for k in _numeric_keys(self.val) if k not in NON_METRIC_KEYS
        ]

    def _val_step(self, index: int) -> int:
        """The epoch of evaluation ``index`` for epoch-based runs, else
        its iteration (MMEngine logs ``step=0`` for evaluations of
        iteration-based loops unless ``log_metric_by_epoch=False``: the
        iteration of the training line before it is used then)."""
        record = self.val[index]
        step = int(record.get('step', index + 1))
        if self.by_epoch or self.val_iters[index] is None:
            return step
        return max(step, self.val_iters[index])

    def last_eval(self, metric: str) -> Optional[Tuple[int, float]]:
        """``(step, value)`` of the last evaluation that logged ``metric``
        (the final one, never the best), or None. ``step`` is the epoch
        (epoch-based runs) or the iteration."""
        for i in range(len(self.val) - 1, -1, -1):
            if _is_number(self.val[i].get(metric)):
                return self._val_step(i), float(self.val[i][metric])
        return None

    def epoch_end_iters(self) -> Dict[int, int]:
        """Epoch -> its last logged iteration (MMEngine logs the last
        iteration of every epoch)."""
        ends: Dict[int, int] = {}
        for r in self.train:
            if 'epoch' in r and 'iter' in r:
                e = int(r['epoch'])
                ends[e] = max(ends.get(e, 0), int(r['iter']))
        return ends

    def train_series(self, key: str) -> Tuple[List[int], List[float]]:
        """Iterations and values of ``key`` in the training lines."""
        xs, ys = [], []
        for i, r in enumerate(self.train):
            if _is_number(r.get(key)):
                xs.append(int(r.get('iter', r.get('step', i + 1))))
                ys.append(float(r[key]))
        return xs, ys

    def val_series(self, key: str) -> Tuple[List[int], List[float]]:
        """Steps (epochs, or iterations for iteration-based loops) and
        values of ``key`` in the validation lines."""
        xs, ys = [], []
        for i, r in enumerate(self.val):
            if _is_number(r.get(key)):
                xs.append(self._val_step(i))
                ys.append(float(r[key]))
        return xs, ys

    def val_series_by_iter(
            self, key: str) -> Optional[Tuple[List[int], List[float]]]:
        """:meth:`val_series` with each evaluation at its iteration (an
        epoch's last iteration for epoch-based runs); None if an epoch has
        no logged iteration."""
        steps, ys = self.val_series(key)
        if not self.by_epoch:
            return steps, ys
        ends = self.epoch_end_iters()
        if any(s not in ends for s in steps):
            return None
        return [ends[s] for s in steps], ys


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_keys(records: List[dict]) -> List[str]:
    keys: Dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if _is_number(v):
                keys.setdefault(k, None)
    return list(keys)
