# Copyright (c) mmreviewkd contributors. All rights reserved.
"""A training / test log a person reads, for ``tools/train.py`` and
``tools/test.py``.

MMEngine's ``Runner`` logs, while it is built, a "System environment" block
(one line of it is PyTorch's ~2,000-character build settings), the whole
config and a table of every hook at every stage: a few hundred lines before
the first iteration. While :func:`readable_runner_log` is active those three
records are rewritten, through Python's public logging API (a LogRecord
factory: nothing of MMEngine is subclassed or patched), into

- ``Environment:`` and one line per package (python, torch with CUDA / GPUs
  or CPU threads, torchvision, numpy, mmcv, mmengine, mmpretrain, mmdet when
  installed, mmreviewkd) plus one line of runtime settings (seed,
  determinism, launcher, world size);
- one ``Config:`` line naming the file the Runner dumps the full config to
  (``work_dir/<config file name>``, see ``Runner.dump_config``);
- one ``Hooks:`` line naming the hooks by priority.

Two warnings every CPU run of MMEngine 0.10 prints (``CheckpointHook``
builds a deprecated ``FileClient``) are lowered to DEBUG, and the
per-parameter initialisation dump MMEngine writes into the log file goes
to a file of its own (:class:`InitInfoDivert`).
``--verbose-log`` (or ``MMREVIEWKD_VERBOSE_LOG=1``) keeps MMEngine's output
unchanged.

:func:`apply_log_policy` prepares the config: ``pin_memory=False`` when no
accelerator is there (PyTorch warns on every epoch otherwise),
``mmreviewkd.ProgressLogHook``, which logs progress at least every 10 % of
an epoch unless ``--cfg-options`` sets ``default_hooks.logger.interval``,
and ``mmreviewkd.ParamInitLogHook`` (the initialisation dump).
"""
import logging
import os
import os.path as osp
import platform
import re
from contextlib import contextmanager
from importlib import metadata
from typing import Callable, Dict, Iterator, List, Optional

VERBOSE_ENV = 'MMREVIEWKD_VERBOSE_LOG'

_ENV_HEADER = '-' * 60 + '\nSystem environment:'
_CONFIG_HEADER = 'Config:\n'
_HOOKS_HEADER = 'Hooks will be executed in the following order:'
# MMEngine 0.10's CheckpointHook builds a FileClient on every run
_DEMOTED = ('"FileClient" will be deprecated in future',
            '"HardDiskBackend" is the alias of "LocalBackend"')
_HOOK_LINE = re.compile(r'^\((\w+)\s*\)\s+(\S+)')


def verbose_log_requested(flag: bool = False) -> bool:
    """Whether MMEngine's full log output is wanted.

    Args:
        flag (bool): The tool's ``--verbose-log``.

    Returns:
        bool: ``flag`` or ``MMREVIEWKD_VERBOSE_LOG`` set to a true value.
    """
    env = os.environ.get(VERBOSE_ENV, '').strip().lower()
    return bool(flag) or env not in ('', '0', 'false', 'no')


def _version(*dists: str) -> Optional[str]:
    """Installed version of the first of ``dists`` that is installed."""
    for dist in dists:
        try:
            return f'{dist} {metadata.version(dist)}'
        except metadata.PackageNotFoundError:
            continue
    return None


def _torch_line() -> str:
    import torch
    line = f'torch {torch.__version__}'
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        cuda = torch.version.cuda or getattr(torch.version, 'hip', None)
        cudnn = torch.backends.cudnn.version()
        line += f', CUDA {cuda}, {count} x {name}'
        if cudnn:
            line += f', cuDNN {cudnn}'
    else:
        threads = torch.get_num_threads()
        line += f', CPU only, {threads} thread{"s" if threads != 1 else ""}'
    return line


def environment_lines() -> List[str]:
    """One line per package: what a bug report needs, nothing more.

    Versions come from the installed distributions (``importlib.metadata``),
    so mmdet is not imported; packages that are not installed are left out
    (mmcv says so, it is required).

    Returns:
        list[str]: e.g. ``['python 3.11.7', 'torch 2.13.0, CPU only, 2
        threads', 'torchvision 0.28.0', ...]``.
    """
    lines = [f'python {platform.python_version()}', _torch_line()]
    for dists in (('torchvision', ), ('numpy', ), ('mmcv', 'mmcv-lite'),
                  ('mmengine', ), ('mmpretrain', ), ('mmdet', )):
        found = _version(*dists)
        if found is not None:
            lines.append(found)
        elif dists[0] == 'mmcv':
            lines.append('mmcv not installed')
    from mmreviewkd import __version__
    lines.append(f'mmreviewkd {__version__}')
    return lines


def _runtime_line(message: str) -> str:
    """Seed, determinism and launcher from MMEngine's runtime section (in
    MMEngine's words, so the same text can be searched for)."""
    _, _, runtime = message.partition('Runtime environment:')
    values: Dict[str, str] = {}
    for line in runtime.splitlines():
        key, sep, value = line.strip().partition(': ')
        if sep:
            values[key] = value
    parts = [
        f'seed: {values.get("seed", "?")}',
        f'deterministic: {values.get("deterministic", "?")}'
    ]
    if values.get('cudnn_benchmark') == 'True':
        parts.append('cudnn_benchmark: True')
    parts.append(
        f'Distributed launcher: {values.get("Distributed launcher", "?")}')
    parts.append(f'world size: {values.get("GPU number", "?")}')
    return 'runtime: ' + ', '.join(parts)


def compact_environment(message: str) -> str:
    """MMEngine's environment block as one line per package.

    Args:
        message (str): The message ``Runner._log_env`` logs.

    Returns:
        str: ``Environment (...):`` and indented package lines.
    """
    lines = environment_lines() + [_runtime_line(message)]
    return (f'Environment (full report: --verbose-log or {VERBOSE_ENV}=1):'
            '\n    ' + '\n    '.join(lines))


def compact_hooks(message: str) -> str:
    """MMEngine's per-stage hook table as one line, hooks by priority.

    Args:
        message (str): The message the Runner logs after registering hooks.

    Returns:
        str: ``Hooks (by priority): RuntimeInfoHook, ...``.
    """
    from mmengine.runner import Priority

    seen: Dict[str, int] = {}
    for line in message.splitlines():
        match = _HOOK_LINE.match(line.strip())
        if match is None or match.group(2) in seen:
            continue
        priority = match.group(1)
        if priority.isdigit():
            seen[match.group(2)] = int(priority)
        else:
            seen[match.group(2)] = Priority[priority].value \
                if priority in Priority.__members__ else 50
    names = sorted(seen, key=lambda name: seen[name])  # stable
    return f'Hooks (by priority): {", ".join(names)}'


def config_location(cfg) -> str:
    """Where ``Runner.dump_config`` writes the full config of ``cfg``."""
    work_dir = cfg.get('work_dir') or '.'
    if getattr(cfg, 'filename', None):
        return osp.join(work_dir, osp.basename(cfg.filename))
    return f'{work_dir} (as <timestamp>.py)'


def rewrite_record(record: logging.LogRecord, cfg=None) -> None:
    """Shorten the Runner's environment, config and hook records in place
    and lower the two FileClient deprecation warnings to DEBUG.

    Only records of MMEngine's logger (name ``'mmengine'``) with a plain
    string message are touched.

    Args:
        record (logging.LogRecord): A new record.
        cfg (Config, optional): The run's config, for the config file path.
    """
    if record.name != 'mmengine' or not isinstance(record.msg, str) \
            or record.args:
        return
    msg = record.msg
    if msg.lstrip('\n').startswith(_ENV_HEADER):
        record.msg = compact_environment(msg)
    elif msg.startswith(_CONFIG_HEADER):
        where = config_location(cfg) if cfg is not None else 'the work dir'
        record.msg = (f'Config: the full config is written to {where} '
                      f'(--verbose-log prints it here)')
    elif msg.startswith(_HOOKS_HEADER):
        record.msg = compact_hooks(msg)
    elif record.levelno == logging.WARNING and msg.startswith(_DEMOTED):
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)


@contextmanager
def readable_runner_log(cfg=None, verbose: bool = False) -> Iterator[None]:
    """Build and run a Runner inside this for a log a person reads.

    Installs a LogRecord factory that calls :func:`rewrite_record` on every
    new record, and restores the previous factory on exit. With
    ``verbose`` (or ``MMREVIEWKD_VERBOSE_LOG=1``) it does nothing.

    Args:
        cfg (Config, optional): The run's config (for the config path).
        verbose (bool): Keep MMEngine's full output.

    Example:
        >>> with readable_runner_log(cfg, verbose=args.verbose_log):
        ...     runner = Runner.from_cfg(cfg)
        ...     runner.train()
    """
    if verbose_log_requested(verbose):
        yield
        return
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            rewrite_record(record, cfg)
        except Exception:  # noqa: BLE001  (never lose a log record)
            pass
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)


INIT_INFO_HEADER = 'Name of parameter - Initialization information\n'


class InitInfoDivert:
    """A stream for a log ``FileHandler`` that moves MMEngine's parameter
    initialisation dump into a file of its own.

    ``BaseModule._dump_init_info`` writes, when training starts, three lines
    per parameter straight into the stream of every ``FileHandler`` of the
    logger (not as log records; thousands of lines for a detector). From
    its header line to its final ``flush()`` this stream writes them to
    ``path`` instead; everything else goes to the handler's own stream.

    Args:
        stream: The handler's stream.
        path (str): The file for the dump.
    """

    def __init__(self, stream, path: str) -> None:
        self.stream = stream
        self.path = path
        self.diverted = False
        self._side = None

    def write(self, text: str) -> int:
        if self._side is None and text == INIT_INFO_HEADER:
            self._side = open(self.path, 'w', encoding='utf-8')
            self.diverted = True
        if self._side is not None:
            return self._side.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        if self._side is not None:  # the dump ends with a flush
            self._side.close()
            self._side = None
        self.stream.flush()

    def close(self) -> None:
        self.flush()
        self.stream.close()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def divert_init_info(logger: logging.Logger, path: str) -> Callable[[], bool]:
    """Send the parameter initialisation dump of ``logger``'s file handlers
    to ``path`` (:class:`InitInfoDivert`, set with the handlers' public
    ``setStream``).

    Args:
        logger (logging.Logger): The runner's logger.
        path (str): The file for the dump.

    Returns:
        Callable[[], bool]: Puts the handlers' own streams back; returns
        whether a dump was diverted.
    """
    swapped = []
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and \
                handler.stream is not None and \
                not isinstance(handler.stream, InitInfoDivert):
            divert = InitInfoDivert(handler.stream, path)
            handler.setStream(divert)
            swapped.append((handler, divert))

    def restore() -> bool:
        diverted = False
        for handler, divert in swapped:
            if handler.stream is divert:
                divert.flush()
                handler.setStream(divert.stream)
            diverted = diverted or divert.diverted
        swapped.clear()
        return diverted

    return restore


def _accelerator_available() -> bool:
    import torch
    accelerator = getattr(torch, 'accelerator', None)
    if accelerator is not None and hasattr(accelerator, 'is_available'):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def logger_interval_set_by_user(cfg_options: Optional[dict]) -> bool:
    """Whether ``--cfg-options`` names the LoggerHook's interval (or
    replaces the logger hook or ``default_hooks`` as a whole)."""
    keys = ('default_hooks', 'default_hooks.logger',
            'default_hooks.logger.interval')
    return any(key in keys for key in (cfg_options or {}))


def apply_log_policy(cfg,
                     cfg_options: Optional[dict] = None,
                     train: bool = True,
                     verbose: bool = False):
    """Settings for a quiet, informative run (called by the tools).

    - Every dataloader with ``pin_memory=True`` gets ``pin_memory=False``
      when there is no accelerator (PyTorch warns on every epoch otherwise;
      pinned memory only helps host-to-GPU copies).
    - Training runs get ``mmreviewkd.ProgressLogHook`` in ``custom_hooks``
      (progress with ETA at least every 10 % of an epoch, a line before the
      first, possibly slow, iteration), unless the config has one already.
      When ``--cfg-options`` sets ``default_hooks.logger.interval`` the hook
      keeps that interval (``adjust_interval=False``).
    - Training runs without ``verbose`` get ``mmreviewkd.ParamInitLogHook``
      (the per-parameter initialisation dump goes to its own file).

    Args:
        cfg (Config): The merged config; changed in place.
        cfg_options (dict, optional): The tool's ``--cfg-options``.
        train (bool): A training run (adds the hooks).
        verbose (bool): ``--verbose-log`` (MMEngine's output unchanged).

    Returns:
        Config: ``cfg``.
    """
    if not _accelerator_available():
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            loader = cfg.get(key)
            if isinstance(loader, dict) and loader.get('pin_memory'):
                loader['pin_memory'] = False
    if not train:
        return cfg
    hooks = list(cfg.get('custom_hooks') or [])
    names = [
        str(h.get('type', '')).split('.')[-1] for h in hooks
        if isinstance(h, dict)
    ]
    if 'ProgressLogHook' not in names:
        hook = dict(type='mmreviewkd.ProgressLogHook')
        if logger_interval_set_by_user(cfg_options):
            hook['adjust_interval'] = False
        hooks.append(hook)
    if 'ParamInitLogHook' not in names and not verbose_log_requested(verbose):
        hooks.append(dict(type='mmreviewkd.ParamInitLogHook'))
    cfg.custom_hooks = hooks
    return cfg
