# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Fail fast, in one line, when the installed OpenMMLab stack does not fit.

``import mmreviewkd`` calls :func:`check_dependency_versions`:

* mmcv (or mmcv-lite), mmengine and mmpretrain are required: missing or out
  of range is a one-line ``RuntimeError``.
* mmdet is optional (only the detection configs need it): a missing mmdet is
  fine, and nothing of mmreviewkd imports it until a detection model or
  dataset is built. An INSTALLED mmdet outside its range is the same one-line
  error at import, because mmengine imports it behind our back as soon as a
  config with ``default_scope='mmdet'`` is used.
* :func:`require_mmdet` is the check for detection entry points: it also
  fails, in one line, when mmdet is not installed.

The ranges mirror ``requirements/`` (``runtime.txt``, ``mminstall.txt``,
``det.txt``); ``tools/setup_env.sh`` builds the newest and the oldest stack
of those ranges that CI tests.
"""
from importlib import metadata
from typing import Callable, Dict, Optional, Tuple

from packaging.version import Version

# package -> (minimum inclusive, maximum exclusive)
COMPATIBLE_VERSIONS: Dict[str, Tuple[str, str]] = {
    'mmcv': ('2.0.0rc4', '2.2.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmpretrain': ('1.0.0', '2.0.0'),
}
# checked only when installed (detection support)
OPTIONAL_VERSIONS: Dict[str, Tuple[str, str]] = {
    'mmdet': ('3.0.0', '3.4.0'),
}

VersionGetter = Callable[[str], Optional[str]]


def _installed(name: str) -> Optional[str]:
    """The installed version of distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == 'mmcv':  # mmcv-lite is an accepted substitute
            try:
                return metadata.version('mmcv-lite')
            except metadata.PackageNotFoundError:
                return None
        return None


def _install_hint(name: str, low: str, high: str) -> str:
    spec = f'{name}>={low},<{high}'
    if name == 'mmcv':
        return (f'`mim install "{spec}"` (or `pip install "mmcv-lite>={low},'
                f'<{high}"` for classification only), or run '
                f'`bash tools/setup_env.sh`')
    if name == 'mmdet':  # needs the full mmcv, with its compiled ops
        return (f'`mim install "{spec}"` (or `pip install -e ".[det]"` in '
                f'the mmreviewkd checkout), or run `bash tools/setup_env.sh`')
    return f'`pip install "{spec}"` or run `bash tools/setup_env.sh`'


def _check(name: str, low: str, high: str, found: Optional[str],
           purpose: str = '') -> None:
    if found is None:
        raise RuntimeError(
            f'mmreviewkd{purpose} needs {name}>={low},<{high}, but {name} is '
            f'not installed; {_install_hint(name, low, high)}.')
    if not Version(low) <= Version(found) < Version(high):
        raise RuntimeError(
            f'mmreviewkd{purpose} needs {name}>={low},<{high}, but '
            f'{name}=={found} is installed; {_install_hint(name, low, high)}.')


def check_dependency_versions(
        get_version: VersionGetter = _installed,
        required: Dict[str, Tuple[str, str]] = COMPATIBLE_VERSIONS,
        optional: Dict[str, Tuple[str, str]] = OPTIONAL_VERSIONS) -> None:
    """Raise one clear ``RuntimeError`` if a dependency is missing or out of
    range.

    Args:
        get_version (Callable): Returns the installed version of a distribution
            or None when it is not installed. Injectable for tests.
        required (dict): Maps a distribution name to its ``(min, max)`` range,
            min inclusive and max exclusive. Missing is an error.
        optional (dict): Same, but checked only when installed (mmdet).
    """
    for name, (low, high) in required.items():
        _check(name, low, high, get_version(name))
    for name, (low, high) in optional.items():
        found = get_version(name)
        if found is not None:
            _check(name, low, high, found)


def require_mmdet(get_version: VersionGetter = _installed) -> None:
    """Raise one clear ``RuntimeError`` unless a fitting mmdet is installed.

    Call it where detection is used; classification never needs mmdet.
    """
    low, high = OPTIONAL_VERSIONS['mmdet']
    _check('mmdet', low, high, get_version('mmdet'),
           purpose=' detection support')


def mmdet_available(get_version: VersionGetter = _installed) -> bool:
    """Whether mmdet is installed (in range or not)."""
    return get_version('mmdet') is not None
