# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Crash-safe checkpoint files: atomic writes and an integrity check.

A checkpoint is written to a temporary file in the target directory, flushed
and fsync'ed, then moved over the target with ``os.replace`` (atomic on
POSIX), and the directory is fsync'ed so the rename survives a power loss. A
process killed at any moment therefore leaves either the previous complete
file or the new complete file, never a truncated one; at worst a stale
``.<name>.<pid>.<random>.partial`` file stays behind.

MMEngine routes checkpoint writes through a file backend
(``save_checkpoint(..., backend_args=...)``); :class:`AtomicLocalBackend` is
registered with MMEngine's file I/O as ``'mmreviewkd_atomic_local'`` so the
runner (or a ``CheckpointHook(backend_args=ATOMIC_BACKEND_ARGS)``) can select
it.
"""
import os
import os.path as osp
import uuid
import zipfile
from pathlib import Path
from typing import Optional, Union

from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND = 'mmreviewkd_atomic_local'
ATOMIC_BACKEND_ARGS = dict(backend=ATOMIC_BACKEND)
PARTIAL_SUFFIX = '.partial'


def _fsync_dir(dirname: str) -> None:
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers (and a later resume)
    only ever see the old or the new complete file.

    Args:
        data (bytes): File contents.
        filepath (str | Path): Target path; its directory is created.
    """
    filepath = str(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    tmp = osp.join(
        dirname, f'.{osp.basename(filepath)}.{os.getpid()}.'
        f'{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}')
    try:
        # 'xb' creates the file with the usual umask-based permissions
        with open(tmp, 'xb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def is_partial_file(name: str) -> bool:
    """Whether ``name`` is a temporary file left by an interrupted
    :func:`atomic_write_bytes`."""
    base = osp.basename(name)
    return base.startswith('.') and base.endswith(PARTIAL_SUFFIX)


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path in MMEngine's ``work_dir/last_checkpoint`` pointer file, or
    None when there is no pointer (or it is empty)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


def checkpoint_problem(filepath: str) -> Optional[str]:
    """Why ``filepath`` is not a complete PyTorch checkpoint, or None.

    Checkpoints in PyTorch's zip format (every ``torch.save`` since 1.6) are
    checked completely: the zip directory must be present and every member's
    CRC must match, which catches truncated and corrupted files without
    unpickling anything. Legacy (pre-zip) pickles cannot be checked cheaply
    and are accepted.

    Args:
        filepath (str): A local file path.

    Returns:
        str | None: A short reason such as ``'it is empty'`` or ``'it is
        truncated or corrupt (BadZipFile: File is not a zip file)'``.
    """
    if not osp.exists(filepath):
        return 'it does not exist'
    if not osp.isfile(filepath):
        return 'it is not a file'
    if osp.getsize(filepath) == 0:
        return 'it is empty'
    with open(filepath, 'rb') as f:
        magic = f.read(4)
    if magic[:1] == b'\x80':
        return None  # legacy pickle checkpoint, loaded as-is
    if magic != b'PK\x03\x04':
        return 'it is not a PyTorch checkpoint'
    try:
        with zipfile.ZipFile(filepath) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f'it is truncated or corrupt ({type(e).__name__}: {e})'
    if bad is not None:
        return f'it is corrupt (bad CRC in {bad!r})'
    return None


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend with atomic :meth:`put`."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes atomically (temporary file, fsync, ``os.replace``).

        Args:
            obj (bytes): Data to be written.
            filepath (str | Path): Path to write data.
        """
        atomic_write_bytes(obj, filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
