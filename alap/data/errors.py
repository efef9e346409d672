"""The one exception a bad dataset raises, so callers (CLI, stages) can report it without a traceback.

It is a UserError (a ValueError) because bad data is bad input; its message always names the offending file or folder
and what was expected there.
"""

from __future__ import annotations

from alap.errors import UserError


class DataError(UserError):
    """A dataset folder or file is missing, empty, corrupt or inconsistent with its layout."""
