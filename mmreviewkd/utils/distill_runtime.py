# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The student's runtime is the runtime: what a ReviewKD config adds to it.

A ReviewKD config inherits the student's config (data, schedule, hooks, EMA,
PreciseBN, pipeline / mode switches) and replaces its ``model``. The
distillation hooks are not a second ``_base_`` (two bases may not both
define ``custom_hooks``): :func:`prepare_distill_runtime` appends them to
the student's ``custom_hooks`` after the config is loaded
(:func:`~mmreviewkd.utils.config_check.load_config`, used by
``tools/train.py`` and ``tools/test.py``, calls it), and lets the student's
EMA average the student only.
"""
import copy
from typing import Any, List, Optional, Sequence

from mmengine.config import Config, ConfigDict

# Appended to the custom_hooks of every ReviewKD config, unless a hook of the
# same type is listed there already (list one to configure it, e.g.
# NonFiniteLossHook(action='skip') or TeacherEvalHook(enabled=False)):
# evaluate the teacher once before training (a wrong teacher checkpoint shows
# up on minute one), stop with a clear message when a loss becomes NaN/inf,
# write a student-only checkpoint (work_dir/student_final.pth) when training
# ends, and keep the RNG states in checkpoints so a resumed run augments its
# data like an uninterrupted one; warn when the distillation's gradient
# drowns or misses the task loss's (every 50 iterations).
DISTILL_HOOKS = (
    dict(type='mmreviewkd.TeacherEvalHook', enabled=True),
    dict(type='mmreviewkd.NonFiniteLossHook', action='stop'),
    dict(type='mmreviewkd.StudentExportHook'),
    dict(type='mmreviewkd.RNGStateHook'),
    dict(type='mmreviewkd.DistillGradRatioHook', interval=50),
)

# MMEngine's EMAHook averages the whole model, the frozen teacher included;
# in a distiller config it becomes this hook (same arguments).
EMA_HOOK_TYPES = ('EMAHook', 'mmengine.EMAHook')
DISTILLER_EMA_HOOK = 'mmreviewkd.DistillerEMAHook'

DISTILLER_TYPE = 'ReviewKDDistiller'


def hook_type_name(hook: Any) -> Optional[str]:
    """The class name a ``custom_hooks`` entry builds, without its scope
    (``'mmreviewkd.RNGStateHook'`` -> ``'RNGStateHook'``); None when the
    entry names no type."""
    if isinstance(hook, (dict, ConfigDict)):
        hook_type = hook.get('type')
    else:  # a built hook object
        hook_type = type(hook)
    if isinstance(hook_type, str):
        return hook_type.rsplit('.', 1)[-1]
    if isinstance(hook_type, type):
        return hook_type.__name__
    return None


def add_custom_hook(cfg: Config, hook: dict) -> bool:
    """Append ``hook`` to ``cfg.custom_hooks`` unless a hook of its type is
    listed already.

    Returns:
        bool: Whether it was appended.
    """
    name = hook_type_name(hook)
    custom_hooks = list(cfg.get('custom_hooks') or [])
    if any(hook_type_name(h) == name for h in custom_hooks):
        return False
    custom_hooks.append(copy.deepcopy(dict(hook)))
    cfg.custom_hooks = custom_hooks
    return True


def is_distiller_config(cfg: Config) -> bool:
    """Whether ``cfg.model`` builds a :class:`ReviewKDDistiller` (or a
    subclass registered in mmreviewkd's ``MODELS``)."""
    model = cfg.get('model')
    if not isinstance(model, (dict, ConfigDict)):
        return False
    model_type = model.get('type')
    if isinstance(model_type, str):
        scope, _, name = model_type.rpartition('.')
        if name == DISTILLER_TYPE:
            return True
        if scope not in ('', 'mmreviewkd'):
            return False
    elif not isinstance(model_type, type):
        return False
    from mmreviewkd.models.distillers import ReviewKDDistiller
    if isinstance(model_type, type):
        return issubclass(model_type, ReviewKDDistiller)
    from mmreviewkd.registry import MODELS
    registered = MODELS.module_dict.get(name)
    return isinstance(registered, type) and issubclass(registered,
                                                       ReviewKDDistiller)


def _distiller_ema(hook: Any) -> Any:
    """``hook`` as a DistillerEMAHook entry when it is MMEngine's EMAHook,
    else unchanged."""
    if not isinstance(hook, (dict, ConfigDict)):
        return hook
    hook_type = hook.get('type')
    if isinstance(hook_type, type):
        from mmengine.hooks import EMAHook
        if hook_type is not EMAHook:
            return hook
    elif hook_type not in EMA_HOOK_TYPES:
        return hook
    hook = copy.deepcopy(dict(hook))
    hook['type'] = DISTILLER_EMA_HOOK
    return hook


def distill_custom_hooks(custom_hooks: Sequence[Any]) -> List[Any]:
    """The student's ``custom_hooks`` adapted to a distiller: its EMAHook
    averages the student (and the connector), not the teacher, and the
    :data:`DISTILL_HOOKS` not listed yet are appended."""
    hooks = [_distiller_ema(h) for h in custom_hooks]
    listed = {hook_type_name(h) for h in hooks}
    for hook in DISTILL_HOOKS:
        if hook_type_name(hook) not in listed:
            hooks.append(copy.deepcopy(hook))
    return hooks


def prepare_distill_runtime(cfg: Config) -> Config:
    """Adapt a loaded config whose model is a ReviewKD distiller; any other
    config is returned unchanged.

    - The :data:`DISTILL_HOOKS` are appended to ``custom_hooks`` (the
      student's hooks, inherited with its config), each unless a hook of
      that type is already listed: list one in the config to configure it
      (``dict(type='mmreviewkd.NonFiniteLossHook', action='skip')``,
      ``dict(type='mmreviewkd.TeacherEvalHook', enabled=False)``).
    - ``EMAHook`` entries become ``mmreviewkd.DistillerEMAHook`` with the
      same arguments: the average covers the student and the connector,
      never the frozen teacher.

    Hooks written for the student (mode / pipeline switches, PreciseBN)
    need nothing: attributes the distiller lacks are looked up on its
    student (``ReviewKDDistiller.__getattr__``). Idempotent; modifies and
    returns ``cfg``.

    Args:
        cfg (Config): The loaded config (after ``--cfg-options``, or before:
            both work).

    Returns:
        Config: ``cfg``.
    """
    if not is_distiller_config(cfg):
        return cfg
    cfg.custom_hooks = distill_custom_hooks(cfg.get('custom_hooks') or [])
    return cfg
