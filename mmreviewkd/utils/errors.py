# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Exceptions for problems the user fixes (a setting, a file, the data).

``tools/train.py`` and ``tools/test.py`` print these as one ``error:`` line;
any other exception keeps its traceback (see :mod:`.cli_errors`). The
subclasses also derive from the built-in error a Python caller would expect.
"""
import math


class UserError(Exception):
    """Bad input; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config value or model argument that cannot work."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be used for what it was given for."""


class DataError(UserError, RuntimeError):
    """Data files that exist but cannot be used (damaged, wrong format)."""


def check_number(owner: str,
                 name: str,
                 value,
                 positive: bool = False) -> float:
    """``value`` as a float; ConfigError unless it is a finite number
    ``>= 0`` (``> 0`` if ``positive``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    ok = ok and math.isfinite(value) and (value > 0 if positive else
                                          value >= 0)
    if not ok:
        bound = '> 0' if positive else '>= 0'
        raise ConfigError(f'{owner}: {name} must be a finite number '
                          f'{bound}, got {value!r}.')
    return float(value)
