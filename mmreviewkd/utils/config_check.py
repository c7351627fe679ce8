# Copyright (c) mmreviewkd contributors. All rights reserved.
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config


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


def load_config(path: str) -> Config:
    """``Config.fromfile`` for local files and ``pkg::`` references, with
    one-line errors for the common mistakes (missing file, missing base)."""
    full, _ = resolve_config_path(path)
    try:
        return Config.fromfile(full)
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise FileNotFoundError(
            f'config {path!r} could not be loaded: {str(e).splitlines()[0]} '
            f'(check its _base_ entries; "mmpretrain::"/"mmdet::" bases need '
            f'those packages installed).') from None
