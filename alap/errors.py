"""What the user must fix, told apart from bugs by class, in a module that imports nothing heavy.

The CLI prints a user error as one line on stderr and exits 2; any other exception is a bug and keeps its
traceback (exit 1). alap's own error classes (ParamsError, DataError, WeightsError, StorageError,
TrackingUnavailable, ...) derive from :class:`UserError`, so the CLI recognises them without importing the
modules that define them (mlflow, boto3).
"""

from __future__ import annotations

# OS errors about a path the user gave (or that a params key names): the message names the path.
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


class UserError(ValueError):
    """Bad input (a flag, a params key, a file or folder) or an unreachable service; the message names it and
    says what was expected, on one line. A ValueError, because bad input is bad input to Python callers too."""


def is_user_error(exc: BaseException) -> bool:
    """The rule: a UserError, any ValueError, or one of PATH_ERRORS.

    Plain ValueError counts because alap raises it for bad input at many sites (arch dicts, sweep points,
    pipeline steps) that predate UserError; a bug that raises ValueError therefore loses its traceback unless
    ``alap --verbose`` is given, which prints it.
    """
    return isinstance(exc, (ValueError, *PATH_ERRORS))


def message(exc: BaseException) -> str:
    """The error's text; an OS error that names a path reads ``path: reason`` instead of ``[Errno N] ...``."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)
