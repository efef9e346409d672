"""The one exception a bad dataset raises, so callers (CLI, stages) can report it without a traceback.

It subclasses ValueError because bad data is bad input; its message always names the offending file or folder
and what was expected there.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset folder or file is missing, empty, corrupt or inconsistent with its layout."""
