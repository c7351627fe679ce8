# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Read checkpoints safely and check that they fit a model before use.

Nothing is evaluated or resumed on weights that do not fit the model: every
missing, unexpected or differently shaped key is a one-line
:class:`~.errors.CheckpointError` naming counts, examples and the likely
cause, instead of MMEngine's non-strict loading with a warning.
"""
import os.path as osp
import pickle
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .checkpoint_io import checkpoint_problem, is_remote
from .checkpoint_safety import safe_load
from .errors import CheckpointError

STUDENT = 'student.'
_ANSI = re.compile(r'\x1b\[[0-9;]*m')


def read_checkpoint(filename: str, what: str = 'checkpoint') -> dict:
    """Load ``filename`` on CPU without running pickled code.

    Args:
        filename (str): A local path (remote URLs go to MMEngine's loader).
        what (str): How the file is named in messages, e.g.
            ``'teacher_ckpt'``.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointError: A directory, a truncated or corrupt file, a file
            that pickles Python objects beyond tensors (refused for safety),
            or one that holds no dict.
    """
    if is_remote(filename):
        from mmengine.runner.checkpoint import _load_checkpoint
        return _load_checkpoint(filename, map_location='cpu')
    if not osp.exists(filename):
        raise FileNotFoundError(
            f'{what} {filename!r} does not exist; fix the path or put the '
            f'checkpoint there (see README "Data and checkpoints").')
    if osp.isdir(filename):
        raise CheckpointError(
            f'{what} {filename!r} is a directory; give the checkpoint file '
            f'(e.g. {osp.join(filename, "epoch_N.pth")}).')
    problem = checkpoint_problem(filename)
    if problem is not None:
        raise CheckpointError(f'cannot read {what} {filename!r}: {problem}; '
                              f'the file is truncated or not a PyTorch '
                              f'checkpoint.')
    try:
        ckpt = safe_load(filename)
    except pickle.UnpicklingError as e:
        message = _ANSI.sub('', str(e))
        found = re.search(r'GLOBAL ([\w.]+)', message)
        name = found.group(1) if found else 'a Python object'
        raise CheckpointError(
            f'{what} {filename!r} holds pickled Python objects beyond '
            f'weights ({name}); it is refused for safety, since loading '
            f'it could run arbitrary code. If you trust the file, convert '
            f'it once to a plain state dict: python -c "import torch; '
            f'm = torch.load(\'SRC\', weights_only=False); torch.save('
            f'getattr(m, \'state_dict\', lambda: m)(), \'DST\')"') from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = _ANSI.sub('', str(e)).strip().splitlines()
        raise CheckpointError(
            f'cannot read {what} {filename!r} ({type(e).__name__}: '
            f'{first[0] if first else ""}); the file is truncated or not a '
            f'PyTorch checkpoint.') from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f'{what} {filename!r} holds no state dict (a pickled '
            f'{type(ckpt).__name__}).')
    return ckpt


def state_of(ckpt: dict) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint (``state_dict`` or the dict itself),
    without DDP's ``module.`` prefix."""
    state = ckpt.get('state_dict', ckpt)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return dict(state)


def key_mismatch(own: Dict[str, torch.Tensor],
                 state: Dict[str, torch.Tensor]) -> Optional[str]:
    """None if ``state`` has exactly the keys and shapes of ``own``, else
    a short description (counts and the first few keys of each kind)."""

    def few(keys: List[str]) -> str:
        return ', '.join(keys[:3]) + (f' (+{len(keys) - 3} more)'
                                      if len(keys) > 3 else '')

    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        k for k in set(own) & set(state)
        if hasattr(state[k], 'shape') and tuple(own[k].shape) != tuple(
            state[k].shape))
    parts = []
    if missing:
        parts.append(f'{len(missing)} missing keys: {few(missing)}')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected keys: {few(unexpected)}')
    if shapes:
        parts.append(f'{len(shapes)} keys with other shapes: {few(shapes)}')
    return '; '.join(parts) or None


def _is_distiller_state(state: dict) -> bool:
    return any(k.startswith(STUDENT) for k in state) and any(
        k.startswith(('teacher.', 'connector.')) for k in state)


def fit_checkpoint(model: nn.Module, ckpt: dict,
                   filename: str) -> Tuple[nn.Module, dict, Optional[str]]:
    """Where the weights of ``ckpt`` go in ``model``, checked strictly.

    - a distiller checkpoint into a distiller, or a plain checkpoint into a
      plain model: the whole model;
    - a student-only checkpoint (e.g. ``student_final.pth``) into a
      distiller: the distiller's student, with a note saying so.

    Args:
        model (nn.Module): The (unwrapped) model built from the config.
        ckpt (dict): The checkpoint, see :func:`read_checkpoint`.
        filename (str): For messages.

    Returns:
        tuple: ``(module, state, note)``: load ``state`` into ``module``
        strictly; ``note`` is None or a line to log.

    Raises:
        CheckpointError: Any key is missing, unexpected or of another
            shape; the message names the likely cause.
    """
    state = state_of(ckpt)
    own = model.state_dict()
    is_distiller = hasattr(model, 'student') and hasattr(model, 'teacher')
    target, note = model, None
    if is_distiller and not any(k.startswith(STUDENT) for k in state):
        target, own = model.student, model.student.state_dict()
        note = (f'{filename} is a student-only checkpoint: loaded into the '
                f'distiller\'s student (teacher and connector keep their '
                f'weights; evaluation uses the student alone).')
    problem = key_mismatch(own, state)
    if problem is None:
        return target, state, note
    if not is_distiller and _is_distiller_state(state):
        cause = ('this is a distiller checkpoint: evaluate it with the '
                 'ReviewKD config, or write the student alone with '
                 'tools/model_converters/extract_student.py')
    elif target is not model:
        cause = ('it is not a checkpoint of this student (another '
                 'architecture or another pair\'s student)')
    else:
        cause = ('it was written for another model (another config or '
                 'pair); use the config it was trained with')
    raise CheckpointError(
        f'checkpoint {filename!r} does not fit the model ({problem}): '
        f'{cause}.')


def load_checked(model: nn.Module, filename: str,
                 logger=None) -> dict:
    """Read ``filename`` safely, check it with :func:`fit_checkpoint` and
    load it strictly. Returns the checkpoint."""
    ckpt = read_checkpoint(filename)
    target, state, note = fit_checkpoint(model, ckpt, filename)
    target.load_state_dict(state, strict=True)
    if logger is not None:
        logger.info(note or f'Loaded checkpoint {filename} (all '
                    f'{len(state)} keys match the model).')
    return ckpt


def check_resume_checkpoint(model: nn.Module,
                            filename: str,
                            ckpt: Optional[dict] = None) -> None:
    """Refuse to resume from a file that is not a training checkpoint of
    this config (an exported student, plain weights, another pair's run).

    Args:
        model (nn.Module): The (unwrapped) model built from the config.
        filename (str): The checkpoint.
        ckpt (dict, optional): Its contents, if read already.

    Raises:
        CheckpointError: With the likely cause and the fix.
    """
    if ckpt is None:
        ckpt = read_checkpoint(filename, 'the checkpoint to resume from')
    meta = ckpt.get('meta')
    training_state = all(
        k in ckpt for k in ('state_dict', 'optimizer', 'message_hub'))
    if not training_state or not isinstance(meta, dict) \
            or 'epoch' not in meta:
        raise CheckpointError(
            f'cannot resume from {filename!r}: it is not a training '
            f'checkpoint (no optimizer / epoch state; e.g. an exported '
            f'student_final.pth or plain weights). Resume from an '
            f'epoch_N.pth / iter_N.pth of the run, or start from its '
            f'weights with --cfg-options load_from={filename} without '
            f'--resume.')
    problem = key_mismatch(model.state_dict(), state_of(ckpt))
    if problem is not None:
        raise CheckpointError(
            f'cannot resume from {filename!r}: it was written for another '
            f'model ({problem}); resume with the config of that run, or '
            f'use another work dir.')
