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
registered with MMEngine's file I/O as ``'mmreviewkd_atomic_local'`` (on
``import mmreviewkd``) so a config selects it for ``CheckpointHook``::

    default_hooks = dict(
        checkpoint=dict(backend_args=dict(backend='mmreviewkd_atomic_local')))

:func:`find_resume_checkpoint` picks the checkpoint ``tools/train.py
--resume`` continues from: the newest complete one.
"""
import logging
import os
import os.path as osp
import re
import uuid
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple, Union

from mmengine.fileio import LocalBackend, register_backend

from .errors import CheckpointError

ATOMIC_BACKEND = 'mmreviewkd_atomic_local'
ATOMIC_BACKEND_ARGS = dict(backend=ATOMIC_BACKEND)
PARTIAL_SUFFIX = '.partial'
_CKPT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')


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
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno is not None:
            # name the file: "No space left on device" alone does not
            raise OSError(
                e.errno, f'cannot write {filepath} ({len(data) / 2**20:.1f} '
                f'MiB): {e.strerror}; free space or choose another '
                f'work_dir') from e
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


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI (``s3://...``) rather than a local path."""
    return '://' in str(path)


def _numbered_checkpoints(ckpt_dir: str) -> List[Tuple[str, int, str]]:
    """``(kind, step, path)`` of the ``epoch_N.pth`` / ``iter_N.pth`` files
    in ``ckpt_dir``."""
    found = []
    if osp.isdir(ckpt_dir):
        for name in os.listdir(ckpt_dir):
            match = _CKPT_NAME.fullmatch(name)
            if match:
                found.append((match.group(1), int(match.group(2)),
                              osp.join(ckpt_dir, name)))
    return found


def resume_candidates(work_dir: str) -> Tuple[str, List[str]]:
    """The checkpoint directory of ``work_dir`` and its checkpoints, newest
    first.

    The work dir is searched first; the directory named by its
    ``last_checkpoint`` file only when the work dir has no checkpoints
    (``CheckpointHook(out_dir=...)``). So a copied or moved work dir resumes
    from its own files, not from where it was written. Checkpoints of the
    pointer's kind (``epoch_N`` or ``iter_N``) come before the other kind;
    a pointer to a custom file name in that directory comes first.

    Args:
        work_dir (str): The work dir of the run.

    Returns:
        tuple[str, list[str]]: The directory and the checkpoint paths.
    """
    pointer_target = read_last_checkpoint(work_dir)
    ckpt_dir = work_dir
    found = _numbered_checkpoints(ckpt_dir)
    if not found and pointer_target is not None:
        if is_remote(pointer_target):
            return osp.dirname(pointer_target), [pointer_target]
        ckpt_dir = osp.dirname(pointer_target) or work_dir
        found = _numbered_checkpoints(ckpt_dir)
    kind = None
    if pointer_target is not None:
        match = _CKPT_NAME.fullmatch(osp.basename(pointer_target))
        kind = match.group(1) if match else None
    found.sort(key=lambda x: (x[0] == kind, x[1]), reverse=True)
    candidates = [path for _, _, path in found]
    if pointer_target is not None and not is_remote(pointer_target) \
            and osp.abspath(osp.dirname(pointer_target)) == \
            osp.abspath(ckpt_dir) and osp.abspath(pointer_target) not in {
                osp.abspath(c) for c in candidates}:
        candidates.insert(0, pointer_target)  # a custom file name
    return ckpt_dir, candidates


def find_resume_checkpoint(work_dir: str,
                           logger: Optional[logging.Logger] = None,
                           remove_partial: bool = True) -> Optional[str]:
    """The newest complete checkpoint to resume the run in ``work_dir`` from.

    Truncated or corrupt checkpoints (see :func:`checkpoint_problem`) are
    skipped with a warning naming them; ``.partial`` files left by an
    interrupted :func:`atomic_write_bytes` are removed. Remote checkpoints
    (a ``last_checkpoint`` pointing to a URI) are taken as they are.

    Args:
        work_dir (str): The work dir of the run.
        logger (logging.Logger, optional): Where to say what was chosen,
            skipped and removed; None says nothing.
        remove_partial (bool): Remove ``.partial`` leftovers. Pass False on
            all processes but one of a distributed run. Defaults to True.

    Returns:
        str | None: The checkpoint, or None when there is none (train from
        scratch).

    Raises:
        CheckpointError: There are checkpoints, but none is complete.
    """

    def log(level: int, message: str) -> None:
        if logger is not None:
            logger.log(level, message)

    ckpt_dir, candidates = resume_candidates(work_dir)
    if remove_partial and osp.isdir(ckpt_dir):
        for name in os.listdir(ckpt_dir):
            if is_partial_file(name):
                path = osp.join(ckpt_dir, name)
                try:
                    os.remove(path)
                except FileNotFoundError:
                    continue
                log(logging.INFO,
                    f'Removed {path}, left by an interrupted save.')
    skipped = []
    for path in candidates:
        problem = None if is_remote(path) else checkpoint_problem(path)
        if problem is None:
            if skipped:
                names = ', '.join(f'{p} ({why})' for p, why in skipped)
                log(
                    logging.WARNING,
                    f'Resume: skipped incomplete checkpoint {names}; '
                    f'resuming from {path}, the last complete checkpoint.')
            else:
                log(
                    logging.INFO, f'Resume: resuming from {path}, the '
                    f'latest checkpoint in {ckpt_dir}.')
            return path
        skipped.append((path, problem))
    if skipped:
        names = ', '.join(f'{p} ({why})' for p, why in skipped)
        raise CheckpointError(f'cannot resume: no complete checkpoint in '
                              f'{ckpt_dir}; skipped {names}.')
    log(
        logging.INFO, f'Resume: no checkpoint in {ckpt_dir}; training '
        f'starts from scratch.')
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
