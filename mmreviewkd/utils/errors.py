# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Exceptions for problems the user fixes (a setting, a file, the data).

``tools/train.py`` and ``tools/test.py`` print these as one ``error:`` line;
any other exception keeps its traceback (see :mod:`.cli_errors`). The
subclasses also derive from the built-in error a Python caller would expect.
"""


class UserError(Exception):
    """Bad input; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config value or model argument that cannot work."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be used for what it was given for."""


class DataError(UserError, RuntimeError):
    """Data files that exist but cannot be used (damaged, wrong format)."""
