# Copyright (c) mmreviewkd contributors. All rights reserved.
"""One clear line for bad input, the full traceback for everything else.

``tools/train.py`` and ``tools/test.py`` run their ``main`` through
:func:`run_cli`. Bad input (:class:`~.errors.UserError`, a missing file, an
unknown type in the config, an image file that cannot be decoded) ends the
process with exit status 1 and a single ``error: <message>`` line on stderr.
Any other exception is a bug or an environment failure (NCCL, out of
memory, ...): its traceback is printed, followed by a one-line summary.
``MMREVIEWKD_DEBUG=1`` lets every exception through unchanged.
"""
import errno
import json
import os
import re
import sys
import traceback
from typing import Callable, Optional, TextIO

from .errors import UserError

DEBUG_ENV = 'MMREVIEWKD_DEBUG'

# a disk that is full or read-only: the message names the file
_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

# MMEngine's builder may prefix errors with "class `X` in pkg/mod.py: "
_BUILD_PREFIX = re.compile(r'class `[\w.]+` in [\w/.\\-]+\.py: ')


def debug_enabled() -> bool:
    """Whether ``MMREVIEWKD_DEBUG`` asks for full tracebacks."""
    return os.environ.get(DEBUG_ENV,
                          '').strip().lower() not in ('', '0', 'false')


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1 \
            and isinstance(exc.args[0], str):
        return exc.args[0]  # without the quotes str(KeyError) adds
    return str(exc)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input rather than a bug.

    True for :class:`~.errors.UserError`, missing / unreadable files, types
    that are not in a registry (a typo in the config) and image files that
    cannot be decoded (mmcv's ``LoadImageFromFile``, also from a DataLoader
    worker).
    """
    if isinstance(exc, (UserError, FileNotFoundError, IsADirectoryError,
                        NotADirectoryError, PermissionError,
                        json.JSONDecodeError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_OR_READ_ONLY:
        return True
    message = _message(exc)
    if isinstance(exc, KeyError) and ' registry' in message:
        return True
    return 'failed to load image' in message


def _json_error_message(exc: json.JSONDecodeError) -> str:
    """Name the JSON file being read (an annotation file, usually): the
    frame that opened it has it in a local variable."""
    filename = None
    tb = exc.__traceback__
    while tb is not None:
        for name in ('annotation_file', 'ann_file', 'file', 'filepath',
                     'filename', 'path'):
            value = tb.tb_frame.f_locals.get(name)
            if isinstance(value, str) and value.endswith('.json'):
                filename = value
        tb = tb.tb_next
    what = f'the JSON file {filename!r}' if filename else 'a JSON file'
    state = 'is empty' if exc.doc.strip() == '' else \
        f'is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})'
    return (f'{what} {state}; check the annotation file (e.g. COCO '
            f'instances_*.json) that the config names.')


def format_error(exc: BaseException) -> str:
    """A one-line description of ``exc``.

    - ``KeyError`` messages lose the quotes ``str(KeyError)`` adds;
    - errors re-raised by a DataLoader worker keep only the original error
      (the last line of the worker's traceback);
    - MMEngine's "class `X` in path.py:" build prefixes are dropped;
    - only the first line of a multi-line message is kept;
    - anything but bad input is prefixed with its type.
    """
    if isinstance(exc, json.JSONDecodeError):
        return _json_error_message(exc)
    message = _message(exc)
    if 'Original Traceback' in message:
        lines = [line for line in message.splitlines() if line.strip()]
        message = lines[-1].strip() if lines else message
    message = _BUILD_PREFIX.sub('', message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    message = lines[0] if lines else ''
    if not is_user_error(exc):
        message = f'{type(exc).__name__}: {message}' if message else \
            type(exc).__name__
    return message or type(exc).__name__


def run_cli(main: Callable[[], Optional[int]],
            stderr: Optional[TextIO] = None) -> int:
    """Run ``main``: bad input ends in one ``error:`` line, anything else
    in its traceback and a summary line.

    Args:
        main (Callable): The tool's main function.
        stderr (TextIO, optional): Where the messages go. Defaults to
            ``sys.stderr``.

    Returns:
        int: The exit status: ``main``'s return value (0 for None), 1 after
        an error, 130 after Ctrl-C.
    """
    if debug_enabled():
        return main() or 0
    stderr = stderr or sys.stderr
    try:
        return main() or 0
    except KeyboardInterrupt:
        print('error: interrupted', file=stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001  (see the module docstring)
        if not is_user_error(exc):
            traceback.print_exception(exc, file=stderr)
        print(f'error: {format_error(exc)}', file=stderr, flush=True)
        return 1
