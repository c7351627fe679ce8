# Copyright (c) mmreviewkd contributors. All rights reserved.
import warnings

# mmengine 0.10.7 imports pkg_resources to locate "mmdet::" configs.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated', category=UserWarning)

from .utils.version_check import check_dependency_versions
from .version import __version__, version_info

check_dependency_versions()

from .utils.checkpoint_safety import \
    register_checkpoint_safe_globals  # noqa: E402,E501
from .utils.config_check import register_config_scope  # noqa: E402

# MMEngine 0.10.7 resumes with torch.load(weights_only=True) under torch>=2.6:
# allow-list the (few, harmless) types its checkpoints contain.
register_checkpoint_safe_globals()
# "mmreviewkd::reviewkd/..." config references, like "mmdet::..." ones
register_config_scope()

__all__ = ['__version__', 'version_info']
