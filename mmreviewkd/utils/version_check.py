# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Fail fast, in one line, when the installed OpenMMLab stack does not fit."""
from importlib import metadata
from typing import Callable, Dict, Optional, Tuple

from packaging.version import Version

# package -> (minimum inclusive, maximum exclusive)
COMPATIBLE_VERSIONS: Dict[str, Tuple[str, str]] = {
    'mmcv': ('2.0.0rc4', '2.2.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmdet': ('3.0.0', '3.4.0'),
    'mmpretrain': ('1.0.0', '2.0.0'),
}


def _installed(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == 'mmcv':  # mmcv-lite is an accepted substitute
            try:
                return metadata.version('mmcv-lite')
            except metadata.PackageNotFoundError:
                return None
        return None


def check_dependency_versions(
        get_version: Callable[[str], Optional[str]] = _installed,
        required: Dict[str, Tuple[str, str]] = COMPATIBLE_VERSIONS) -> None:
    """Raise one clear ``RuntimeError`` if a dependency is missing or out of range.

    Args:
        get_version (Callable): Returns the installed version of a distribution
            or None when it is not installed. Injectable for tests.
        required (dict): Maps a distribution name to its ``(min, max)`` range,
            min inclusive and max exclusive.
    """
    for name, (low, high) in required.items():
        found = get_version(name)
        if found is None:
            raise RuntimeError(
                f'mmreviewkd needs {name}>={low},<{high}, but {name} is not '
                f'installed; run `bash tools/setup_env.sh`.')
        if not Version(low) <= Version(found) < Version(high):
            raise RuntimeError(
                f'mmreviewkd needs {name}>={low},<{high}, but {name}=={found} '
                f'is installed; run `bash tools/setup_env.sh` or '
                f'`pip install "{name}>={low},<{high}"`.')
