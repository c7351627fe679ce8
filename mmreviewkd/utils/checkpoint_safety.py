# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Let ``torch.load(weights_only=True)`` read MMEngine checkpoints.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses
any pickled global that is not allow-listed. MMEngine 0.10.7 calls
``torch.load`` without ``weights_only``, so resuming from its own checkpoints
fails with ``Unsupported global: mmengine.logging.history_buffer.HistoryBuffer``.

Rather than turning weights-only loading off (which would execute arbitrary
pickles), we allow-list exactly the types MMEngine writes into a checkpoint:
its ``HistoryBuffer`` (inside the message hub state) and the numpy array /
scalar / dtype types those buffers and ``runtime_info`` contain.

One more global appears: ``HistoryBuffer.__getstate__`` pickles its
statistics methods (``min``, ``max``, ``current``, ``mean``) by reference,
i.e. as ``builtins.getattr(HistoryBuffer, 'min')``. Allow-listing the real
``getattr`` would let a checkpoint fetch any attribute of any allow-listed
object, so the name ``builtins.getattr`` is bound to
:func:`history_buffer_getattr` instead, which resolves exactly those public
methods of ``HistoryBuffer`` and refuses everything else.
"""
import _compat_pickle
import codecs
import pickle
from typing import List

import numpy as np
import torch


def _numpy_globals() -> List:
    """The numpy reconstructors and types that pickled arrays and scalars
    reference (module paths differ between numpy 1.x and 2.x)."""
    found = [np.ndarray, np.dtype]
    # ``np.core`` was renamed to ``np._core`` in numpy 2; pickles written by
    # either refer to their own path, so allow whichever exist.
    for mod_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            mod = __import__(mod_name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:
            continue
        for attr in ('_reconstruct', 'scalar'):
            obj = getattr(mod, attr, None)
            if obj is not None:
                found.append((obj, f'{mod_name}.{attr}'))
    # dtype classes, e.g. numpy.dtypes.Float64DType (numpy >= 1.25)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in dir(dtypes):
            obj = getattr(dtypes, name)
            if isinstance(obj, type) and name.endswith('DType'):
                found.append(obj)
    return found


def history_buffer_getattr(obj, name: str):
    """A ``getattr`` restricted to the public methods of ``HistoryBuffer``
    (what MMEngine pickles for its statistics methods)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and isinstance(name, str) \
            and not name.startswith('_') \
            and callable(getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}), which is not an '
        f'MMEngine HistoryBuffer statistics method; refusing to load it.')


def checkpoint_safe_globals() -> List:
    """The allow-list: types an MMEngine training checkpoint is built from."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')
            ] + _numpy_globals()


def _torch_loads_weights_only_by_default() -> bool:
    """torch >= 2.6: ``torch.load`` defaults to ``weights_only=True`` and
    ``add_safe_globals`` takes the ``(obj, 'module.name')`` entries used
    above (torch 2.4/2.5 have ``add_safe_globals`` but would fail on those
    entries at the next weights-only load; they also load unrestricted by
    default, so MMEngine's resume needs no allow-list there)."""
    from packaging.version import Version
    return Version(torch.__version__.split('+')[0]) >= Version('2.6')


def register_checkpoint_safe_globals() -> None:
    """Allow-list the types above for ``torch.load(weights_only=True)``.

    Idempotent, and a no-op on torch < 2.6 (no ``add_safe_globals`` before
    2.4, no ``(obj, name)`` entries and no weights-only default before 2.6).
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None and _torch_loads_weights_only_by_default():
        add(checkpoint_safe_globals())


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only torch's weights-only globals and
    :func:`checkpoint_safe_globals` (torch < 2.6, which has no allow-list
    for its own ``weights_only`` loader)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from torch._weights_only_unpickler import _get_allowed_globals
        self._allowed = _get_allowed_globals()
        # numpy's array pickles encode their bytes this way (allowed by
        # torch's own list only since 2.4)
        self._allowed.setdefault('_codecs.encode', codecs.encode)
        for entry in checkpoint_safe_globals():
            obj, key = entry if isinstance(entry, tuple) else (
                entry, f'{entry.__module__}.{entry.__qualname__}')
            self._allowed[key] = obj

    def find_class(self, module: str, name: str):
        # protocol-2 pickles name Python 2 modules (``__builtin__``)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name),
                                                       (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f'{module}.{name}'
        if full in self._allowed:
            return self._allowed[full]
        raise pickle.UnpicklingError(f'Unsupported global: GLOBAL {full}')


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs of a pickle module."""
    __name__ = 'mmreviewkd_restricted_pickle'
    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())


def safe_load(filename: str) -> object:
    """``torch.load`` on CPU that never runs arbitrary pickled code: only
    tensors, containers of plain values and the MMEngine checkpoint types of
    :func:`checkpoint_safe_globals` are read; anything else raises
    ``pickle.UnpicklingError('... Unsupported global: GLOBAL <name>')``."""
    if _torch_loads_weights_only_by_default():
        register_checkpoint_safe_globals()
        return torch.load(filename, map_location='cpu', weights_only=True)
    return torch.load(
        filename,
        map_location='cpu',
        weights_only=False,
        pickle_module=_RestrictedPickleModule)
