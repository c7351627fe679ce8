# Copyright (c) mmreviewkd contributors. All rights reserved.
"""One clear line instead of a traceback wall when a command line tool fails.

``tools/train.py`` and ``tools/test.py`` run their ``main`` through
:func:`run_cli`: an exception ends the process with exit status 1 and a
single ``error: <message>`` line on stderr. ``MMREVIEWKD_DEBUG=1`` lets the
exception through with its full traceback.
"""
import os
import re
import sys
from typing import Callable, Optional, TextIO

DEBUG_ENV = 'MMREVIEWKD_DEBUG'

# Exceptions our checks (and MMEngine's / the data pipeline's) raise for
# bad user input; their message is the whole story.
USER_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError,
               AssertionError, ImportError, EOFError)

# MMEngine's builder prefixes errors with "class `X` in pkg/mod.py: "
_BUILD_PREFIX = re.compile(r'class `[\w.]+` in [\w/.\\-]+\.py: ')


def debug_enabled() -> bool:
    """Whether ``MMREVIEWKD_DEBUG`` asks for full tracebacks."""
    return os.environ.get(DEBUG_ENV,
                          '').strip().lower() not in ('', '0', 'false')


def format_error(exc: BaseException) -> str:
    """A one-line description of ``exc``.

    - ``KeyError`` messages lose the quotes ``str(KeyError)`` adds;
    - errors re-raised by a DataLoader worker keep only the original error
      (the last line of the worker's traceback);
    - MMEngine's "class `X` in path.py:" build prefixes are dropped;
    - only the first line of a multi-line message is kept.
    """
    if isinstance(exc, KeyError) and len(exc.args) == 1 \
            and isinstance(exc.args[0], str):
        message = exc.args[0]
    else:
        message = str(exc)
    if 'Original Traceback' in message:
        lines = [line for line in message.splitlines() if line.strip()]
        message = lines[-1].strip() if lines else message
    message = _BUILD_PREFIX.sub('', message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    message = lines[0] if lines else ''
    if not isinstance(exc, USER_ERRORS):
        message = f'{type(exc).__name__}: {message}' if message else \
            type(exc).__name__
        message += f' (set {DEBUG_ENV}=1 for the traceback)'
    return message or type(exc).__name__


def run_cli(main: Callable[[], Optional[int]],
            stderr: Optional[TextIO] = None) -> int:
    """Run ``main`` and turn an exception into one ``error:`` line.

    Args:
        main (Callable): The tool's main function.
        stderr (TextIO, optional): Where the line goes. Defaults to
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
    except Exception as exc:  # noqa: BLE001  (one line, see the docstring)
        print(f'error: {format_error(exc)}', file=stderr, flush=True)
        return 1
