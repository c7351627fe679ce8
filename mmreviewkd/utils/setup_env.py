# Copyright (c) mmreviewkd contributors. All rights reserved.
import datetime
import warnings

from mmengine import DefaultScope

# registers the 'mmreviewkd_atomic_local' file backend with MMEngine on
# `import mmreviewkd` (configs select it for CheckpointHook by name)
from . import checkpoint_io  # noqa: F401


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all modules of mmreviewkd into the registries.

    Args:
        init_default_scope (bool): Whether to initialize the mmreviewkd default
            scope. When True, the global default scope is set to
            ``mmreviewkd`` and ``Registry.build`` looks in mmreviewkd's
            registries first (then MMEngine's). Configs of this repository
            keep ``default_scope='mmpretrain'`` / ``'mmdet'`` and name our
            components ``mmreviewkd.X``, so most users leave the scope alone.
            Defaults to True.
    """
    import mmreviewkd.datasets  # noqa: F401,F403
    import mmreviewkd.engine  # noqa: F401,F403
    import mmreviewkd.models  # noqa: F401,F403

    if not init_default_scope:
        return
    never_created = DefaultScope.get_current_instance() is None \
        or not DefaultScope.check_instance_created('mmreviewkd')
    if never_created:
        DefaultScope.get_instance('mmreviewkd', scope_name='mmreviewkd')
        return
    current_scope = DefaultScope.get_current_instance()
    if current_scope.scope_name != 'mmreviewkd':
        warnings.warn('The current default scope '
                      f'"{current_scope.scope_name}" is not "mmreviewkd", '
                      '`register_all_modules` will force the current '
                      'default scope to be "mmreviewkd". If this is not '
                      'expected, please set `init_default_scope=False`.')
        # avoid name conflict
        new_instance_name = f'mmreviewkd-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_instance_name, scope_name='mmreviewkd')
