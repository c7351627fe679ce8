# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Keep freed CPU memory for reuse (glibc malloc tuning).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks larger than
its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and gives them
back with ``munmap`` when freed, and it returns the top of its heap to the
system once more than the trim threshold is free there. A training step
that creates and frees the same large activations every iteration then
page-faults on every one of them, every time: on the 2-core benchmark
machines a 64 MiB tensor costs about 16 ms of page faults against 5 ms of
arithmetic. The ABF chain of resnet32x4 -> resnet8x4 (batch 64) makes
several such tensors per step; with this setting the distiller step was 13%
faster, 24% with the authors' op-by-op fusion
(``tools/analysis/benchmark_distill.py --default-malloc`` compares). This
is the waste that Intel's PyTorch CPU guide removes by preloading jemalloc
or tcmalloc; here glibc is told instead to serve every block from its heap
and never to trim it, so freed blocks are reused. The price is that the process keeps its peak heap
(plus fragmentation) until it exits.

GPU runs gain nothing from it, so the runner applies it only when CUDA is
not available (``env_cfg.reuse_freed_cpu_memory='auto'``, the default).
"""
import ctypes
import platform
import sys

# mallopt() parameter numbers of glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


def is_supported() -> bool:
    """Whether this process runs on glibc, whose ``mallopt`` is used."""
    return sys.platform.startswith('linux') and \
        platform.libc_ver()[0] == 'glibc'


def reuse_freed_cpu_memory() -> bool:
    """Make glibc keep freed memory in its heap for reuse.

    Calls ``mallopt(M_MMAP_MAX, 0)`` (no block is served by a separate
    ``mmap``) and ``mallopt(M_TRIM_THRESHOLD, INT_MAX)`` (the heap is never
    given back). Affects the whole process and the worker processes it
    forks later; calling it again does nothing.

    Returns:
        bool: True if the setting is active (now or from an earlier call),
        False where it cannot apply (not glibc, or ``mallopt`` refused).
    """
    global _applied
    if _applied:
        return True
    if not is_supported():
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and \
            libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    except (OSError, AttributeError):
        return False
    _applied = bool(ok)
    return _applied


def resolve_reuse_setting(value, cuda_available: bool) -> bool:
    """Turn ``env_cfg.reuse_freed_cpu_memory`` into a yes/no.

    Args:
        value: ``'auto'`` (yes when CUDA is not available), True or False.
        cuda_available (bool): Whether the run uses CUDA.

    Returns:
        bool: Whether to call :func:`reuse_freed_cpu_memory`.
    """
    if value == 'auto':
        return not cuda_available
    if isinstance(value, bool):
        return value
    raise ValueError(
        f'env_cfg.reuse_freed_cpu_memory must be "auto", True or False, got '
        f'{value!r}.')
