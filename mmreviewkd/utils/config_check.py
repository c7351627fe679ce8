# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Config references and loading: local files, ``mmpretrain::`` /
``mmdet::`` and ``mmreviewkd::`` references, one-line errors.

``mmreviewkd::reviewkd/cifar100/x.py`` names a config shipped with this
package, in ``_base_`` lists, ``cfg_path`` of a student / teacher and on the
command line, the way ``mmdet::`` names mmdet's. MMEngine 0.10 resolves
``pkg::`` only for the packages of its table
``mmengine.config.utils.MODULE2PACKAGE`` and finds the files through
``pkg_resources`` and ``.mim/model-index.yml``, which fails for an editable
(PEP 660) install and for a package without a model index.
:func:`register_config_scope`, run on ``import mmreviewkd``, adds
``mmreviewkd`` to that table and resolves ``mmreviewkd::`` references
itself, from the installed package's ``mmreviewkd/.mim/configs`` (a copy in
a wheel, a symlink to ``configs/`` in an editable install; setup.py writes
it) or, in a source checkout without ``.mim``, from ``configs/`` next to the
package. Plain ``mmengine.Config.fromfile`` therefore resolves
``mmreviewkd::`` once ``mmreviewkd`` has been imported; ``tools/*.py`` and
every ``mmreviewkd.*`` import do that.
"""
import ast
import os
import os.path as osp
import re
from typing import Optional, Tuple

from mmengine.config import Config

from .errors import ConfigError

SCOPE = 'mmreviewkd'
_PREFIX = f'{SCOPE}::'


def package_config_root(package_dir: Optional[str] = None) -> str:
    """The folder ``mmreviewkd::`` references point into.

    ``mmreviewkd/.mim/configs`` of the imported package when it exists (wheel
    and editable installs), else ``configs/`` of the source checkout that
    holds the package.

    Args:
        package_dir (str, optional): The ``mmreviewkd`` package folder.
            Defaults to the imported package's.
    """
    if package_dir is None:
        package_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    mim_configs = osp.join(package_dir, '.mim', 'configs')
    if osp.isdir(mim_configs):
        return mim_configs
    return osp.join(osp.dirname(package_dir), 'configs')


def resolve_package_config(path: str) -> str:
    """The file a ``'mmreviewkd::x/y.py'`` reference names.

    Raises:
        FileNotFoundError: The reference names no shipped config.
    """
    rel = path[len(_PREFIX):]
    root = package_config_root()
    full = osp.join(root, rel)
    if not rel or osp.isabs(rel) or not osp.isfile(full):
        raise FileNotFoundError(
            f'config reference {path!r}: no such config in {root} (the '
            f'path after "{_PREFIX}" is relative to the configs/ folder of '
            f'mmreviewkd).')
    return full


def _get_cfg_path_with_scope(original):
    """Wrap MMEngine's ``Config._get_cfg_path`` (a staticmethod) so that
    ``mmreviewkd::`` references resolve to our configs.

    The returned scope is None: our configs set their own ``default_scope``
    (``'mmpretrain'`` / ``'mmdet'``) and name our components
    ``mmreviewkd.X``, so a base taken from them must stay in the scope the
    file itself declares, exactly as when it is inherited by a relative
    path (MMEngine would otherwise add ``_scope_='mmreviewkd'`` to every
    typed dict of the base, including the student's ``ImageClassifier``).
    """

    def _get_cfg_path(cfg_path: str,
                      filename: str) -> Tuple[str, Optional[str]]:
        if isinstance(cfg_path, str) and cfg_path.startswith(_PREFIX):
            return resolve_package_config(cfg_path), None
        return original(cfg_path, filename)

    _get_cfg_path.__wrapped__ = original  # type: ignore[attr-defined]
    _get_cfg_path.mmreviewkd_scope = True  # type: ignore[attr-defined]
    return _get_cfg_path


def register_config_scope() -> None:
    """Make ``mmreviewkd::`` config references work in MMEngine (idempotent).

    Adds ``mmreviewkd`` to MMEngine's ``MODULE2PACKAGE`` table (the packages
    ``pkg::`` may name) and resolves ``mmreviewkd::`` paths in
    ``Config._get_cfg_path`` from :func:`package_config_root`; every other
    reference goes to MMEngine unchanged.
    """
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(SCOPE, SCOPE)
    current = Config.__dict__['_get_cfg_path']
    function = current.__func__ if isinstance(current,
                                              staticmethod) else current
    if getattr(function, 'mmreviewkd_scope', False):
        return
    Config._get_cfg_path = staticmethod(_get_cfg_path_with_scope(function))


def resolve_config_path(path: str) -> Tuple[str, Optional[str]]:
    """Resolve a local config path or a ``'mmpretrain::x/y.py'`` reference.

    Returns:
        tuple: ``(absolute file path, scope)`` where scope is the package
        scope of a ``::`` reference, else None.

    Raises:
        FileNotFoundError: one line naming the missing file or package.
    """
    if '::' in path:
        scope = path.partition('::')[0]
        if scope == SCOPE:
            return resolve_package_config(path), scope
        try:
            full, _ = Config._get_cfg_path(path, '')
        except (FileNotFoundError, ModuleNotFoundError, ValueError,
                AssertionError) as e:
            raise FileNotFoundError(
                f'config reference {path!r} cannot be resolved: '
                f'{str(e).splitlines()[0] if str(e) else type(e).__name__} '
                f'(is {scope} installed, and is the path right?).') from None
        if not osp.isfile(full):
            raise FileNotFoundError(
                f'config reference {path!r} points to {full!r}, which does '
                f'not exist; check the path inside {scope}\'s configs.')
        return full, scope
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist.')
    return osp.abspath(path), None


def syntax_error_message(error: SyntaxError, filename: str) -> str:
    """One line naming the file, line and text of a config syntax error
    (MMEngine reports it as "(<unknown>, line 2)", without the file)."""
    found = re.search(r'config file (.+?): ', str(error))
    if found is not None:  # MMEngine named a (base) file
        filename = found.group(1)
    try:
        with open(filename, encoding='utf-8') as f:
            ast.parse(f.read(), filename)
    except SyntaxError as e:
        text = f': {e.text.strip()[:80]!r}' if e.text else ''
        return (f'config file {filename} has a Python syntax error at line '
                f'{e.lineno} ({e.msg}){text}; fix that line.')
    except OSError:
        pass
    return (f'config {filename} or one of its _base_ files has a Python '
            f'syntax error: {str(error).splitlines()[0]}.')


def load_config(path: str) -> Config:
    """``Config.fromfile`` for local files and ``pkg::`` references, with
    one-line errors for the common mistakes (missing file, missing base).

    A ReviewKD distiller config comes back ready to run: the distillation
    hooks are appended to the student's ``custom_hooks`` and the student's
    EMA averages the student only (:func:`~mmreviewkd.utils.distill_runtime.
    prepare_distill_runtime`); any other config is returned as loaded.
    """
    register_config_scope()
    full, _ = resolve_config_path(path)
    try:
        cfg = Config.fromfile(full)
    except SyntaxError as e:
        raise ConfigError(syntax_error_message(e, full)) from None
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise FileNotFoundError(
            f'config {path!r} could not be loaded: {str(e).splitlines()[0]} '
            f'(check its _base_ entries; "mmpretrain::"/"mmdet::" bases need '
            f'those packages installed).') from None
    from .distill_runtime import prepare_distill_runtime
    return prepare_distill_runtime(cfg)


_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = ('val_evaluator', 'test_evaluator')


def _datasets(loader: dict):
    """The dataset dicts of a dataloader, wrappers (``dataset=`` /
    ``datasets=[...]``) included."""
    stack = [loader.get('dataset')]
    while stack:
        dataset = stack.pop()
        if isinstance(dataset, dict):
            yield dataset
            stack.append(dataset.get('dataset'))
            stack.extend(dataset.get('datasets') or [])


def apply_data_root(cfg: Config, cfg_options: Optional[dict]) -> Config:
    """Make ``--cfg-options data_root=DIR`` reach every dataloader.

    Configs write their ``data_root`` variable into each dataset dict (and
    COCO evaluators into ``ann_file``) when they are loaded, so overriding
    the top-level key alone changes nothing. When ``cfg_options`` sets
    ``data_root`` (and nothing more specific), every dataset ``data_root``
    equal to the config's previous value (or, without a top-level
    ``data_root``, the value all datasets share) becomes the new one, and
    evaluator paths under it move along.

    Args:
        cfg (Config): The config, with ``cfg_options`` not yet merged.
        cfg_options (dict, optional): ``--cfg-options``.

    Returns:
        Config: ``cfg`` with ``cfg_options`` merged.
    """
    def datasets():
        return [d for key in _LOADERS if isinstance(cfg.get(key), dict)
                for d in _datasets(cfg[key])]

    options = dict(cfg_options or {})
    new = options.get('data_root')
    old = cfg.get('data_root')
    if old is None:
        roots = {d['data_root'] for d in datasets() if 'data_root' in d}
        old = roots.pop() if len(roots) == 1 else None
    cfg.merge_from_dict(options)
    if new is None or old is None or new == old:
        return cfg
    explicit = {k for k in options if k != 'data_root'}
    for dataset in datasets():
        if dataset.get('data_root') == old and not any(
                k.endswith('.data_root') for k in explicit):
            dataset['data_root'] = new
    old_prefix = str(old).rstrip('/')
    for key in _EVALUATORS:
        evaluators = cfg.get(key)
        for evaluator in (evaluators if isinstance(evaluators, list) else
                          [evaluators]):
            path = evaluator.get('ann_file') if isinstance(evaluator,
                                                           dict) else None
            if isinstance(path, str) and path.startswith(old_prefix + '/'):
                evaluator['ann_file'] = osp.join(
                    str(new), path[len(old_prefix) + 1:])
    return cfg


#: what each launcher needs in the environment, and how to get it
_LAUNCHER_ENV = {
    'pytorch': (('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                'start it with tools/dist_train.sh CONFIG GPUS (or torchrun '
                '--nproc-per-node GPUS tools/train.py CONFIG --launcher '
                'pytorch)'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'start it with tools/slurm_train.sh (srun) inside a Slurm '
              'allocation'),
    'mpi': (('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'),
            'start it with mpirun'),
}


def check_launcher(launcher: str) -> None:
    """One line when ``--launcher`` is given without the environment its
    launcher sets (e.g. ``--launcher pytorch`` without torchrun).

    Raises:
        ConfigError: Naming the missing variables and how to start the run.
    """
    names, how = _LAUNCHER_ENV.get(launcher, ((), ''))
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise ConfigError(
            f'--launcher {launcher} needs the environment variables its '
            f'launcher sets ({", ".join(missing)} missing); {how}, or drop '
            f'--launcher for a single process.')
