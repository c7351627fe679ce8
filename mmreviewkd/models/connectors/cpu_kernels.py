# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Loader of the C++ CPU kernels of the ABF chain (``csrc/``).

The kernels (:mod:`.attention_fusion`, :mod:`.batch_norm`) remove most of
the memory passes that PyTorch's CPU ops make over the full-resolution ABF
features. They are compiled with PyTorch's C++ extension loader on first use
(about 15 s with a C++ compiler and ninja; cached under
``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) and
register the operators ``torch.ops.mmreviewkd_cpu.*``.

Set ``MMREVIEWKD_CPU_KERNELS=0`` to use PyTorch ops only. Where the kernels
cannot be built, a warning says so once and PyTorch ops are used; results
are the same either way up to float rounding.
"""
import os
import os.path as osp
import threading
import warnings
from typing import List, Sequence, Tuple

import torch

CPU_KERNELS_ENV = 'MMREVIEWKD_CPU_KERNELS'
SOURCES = ('attention_fusion_cpu.cpp', 'batch_norm_cpu.cpp')
_state = {'loaded': None}  # None: not tried yet, True / False: the outcome
_lock = threading.Lock()


def cpu_kernels_enabled() -> bool:
    """False if ``MMREVIEWKD_CPU_KERNELS`` is set to 0/false/no/off."""
    value = os.environ.get(CPU_KERNELS_ENV, '1').strip().lower()
    return value not in ('0', 'false', 'no', 'off')


def cpu_kernels_available() -> bool:
    """Whether the CPU kernels are loaded, building them on the first call.

    Returns False, without building, when they are disabled by
    ``MMREVIEWKD_CPU_KERNELS=0``; if the build fails, warns once and
    returns False from then on.
    """
    if not cpu_kernels_enabled():
        return False
    if _state['loaded'] is None:
        with _lock:
            if _state['loaded'] is None:
                _state['loaded'] = _load()
    return _state['loaded']


def autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (any torch version)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no per-device query
        return torch.is_autocast_enabled() or \
            torch.is_autocast_cpu_enabled()


def channels_last_applies(feats: Sequence[torch.Tensor]) -> bool:
    """Whether the ABF chain runs channels-last (NHWC) on these features.

    On CPU with the kernels loaded, float32/float64 and no autocast: the
    kernels work on NHWC, and oneDNN's convolutions take NHWC without the
    reorders they need around NCHW tensors.
    """
    if not all(f.device.type == 'cpu' and f.dim() == 4 and
               f.dtype in (torch.float32, torch.float64) for f in feats):
        return False
    if autocast_on('cpu'):
        return False
    return cpu_kernels_available()


class _ToChannelsLast(torch.autograd.Function):
    """A channels-last copy whose gradient comes back in the input's
    layout, so autograd adds it to the feature's other gradients without a
    mixed-layout sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        if ctx.channels_last:
            return grad
        return grad.contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x.contiguous(memory_format=torch.channels_last)``, its gradient
    returned in ``x``'s own layout (see :class:`_ToChannelsLast`)."""
    return _ToChannelsLast.apply(x)


def _registered() -> bool:
    try:
        torch.ops.mmreviewkd_cpu.attention_fusion_forward
        torch.ops.mmreviewkd_cpu.batch_norm_stats
        torch.ops.mmreviewkd_cpu.batch_norm_backward
    except (AttributeError, RuntimeError):
        return False
    return True


def _isa() -> Tuple[str, List[str]]:
    """Instruction-set tag and compiler flags for this machine's CPU.

    The tag is part of the extension's name, so machines of different
    capability that share a home directory keep separate builds.
    """
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch < 2.1
        capability = 'DEFAULT'
    if capability in ('AVX2', 'AVX512'):  # x86-64; AVX2 measured fastest
        return 'avx2', ['-mavx2', '-mfma']
    return 'generic', []


def _load() -> bool:
    if _registered():  # loaded by another copy of this module
        return True
    csrc = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc')
    tag, isa_flags = _isa()
    try:
        from torch.utils.cpp_extension import load
        load(
            name=f'mmreviewkd_cpu_ops_{tag}',
            sources=[osp.join(csrc, name) for name in SOURCES],
            extra_cflags=['-O3', '-fopenmp'] + isa_flags,
            is_python_module=False,
            verbose=False)
        if not _registered():
            raise RuntimeError('the operators did not register')
    except Exception as e:  # no compiler, no ninja, read-only cache, ...
        reason = (str(e).strip().splitlines() or [''])[-1]
        warnings.warn(
            f'mmreviewkd: could not build the CPU kernels of the ABF chain '
            f'({type(e).__name__}: {reason}); using PyTorch ops instead '
            f'(same results, slower on CPU). Install a C++ compiler and '
            f'ninja, or set {CPU_KERNELS_ENV}=0 to silence this.')
        return False
    return True
