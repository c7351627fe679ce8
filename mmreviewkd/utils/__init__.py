# Copyright (c) mmreviewkd contributors. All rights reserved.
from .checkpoint_safety import register_checkpoint_safe_globals
from .setup_env import register_all_modules
from .version_check import check_dependency_versions

__all__ = [
    'register_all_modules', 'check_dependency_versions',
    'register_checkpoint_safe_globals'
]
