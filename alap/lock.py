"""One writer per output directory: a second alap process on the same outputs refuses at once, never interleaves.

An advisory ``fcntl.flock`` on a lock file under the state dir (``.alap/state/locks/``, never inside a DVC output,
which DVC deletes and caches). The OS drops the lock when its process dies, so a ``kill -9`` leaves no stale
lock: the file may stay, its lock does not, and the next holder takes it over. A holder deletes its lock file when
done, so none accumulate (one per sweep point ever run); a process that opened the file just before it was deleted
finds it unlinked once it holds the lock and starts over on the new file, so two can never hold one folder. The
holder writes its pid and command line into the file, so the refusal names who holds it. Which directory each verb
locks is in docs/architecture.md (Contracts: one writer).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from alap.errors import UserError


class OutputLocked(UserError):
    """Another process is writing the same outputs; the message names them and the holder's pid."""


def lock_file(state: Path, output: Path) -> Path:
    """The lock file of ``output`` (a directory) under ``state``: named after its absolute path, so two different
    directories never share a lock and the same directory reached two ways (relative, absolute) always does."""
    name = re.sub(r"[^\w.-]+", "_", str(output.resolve()).strip("/"))
    return state / "locks" / f"{name}.lock"


@contextlib.contextmanager
def output_lock(state: Path, output: Path, what: str) -> Iterator[None]:
    """Hold the lock of ``output`` for the block, or raise :class:`OutputLocked` naming ``what`` (e.g. "task
    seg2face") and the holder. Never waits: a second run of a stage that takes minutes is a mistake to report,
    not a queue."""
    path = lock_file(state, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked_handle(path, output, what) as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {shlex.join(sys.argv)}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink()  # while still locked: a waiter that opened it sees it unlinked and starts over


@contextlib.contextmanager
def _locked_handle(path: Path, output: Path, what: str) -> Iterator[TextIO]:
    """The lock file, open and locked, still linked at ``path`` (a holder that finished may have deleted the file
    this process opened: then the lock on it guards nothing, and the file at ``path`` is tried instead)."""
    while True:
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "pid not yet recorded"
                raise OutputLocked(
                    f"{what}: {output} is being written by another alap process ({holder}); "
                    f"wait for it to finish (lock {path})"
                ) from None
            if path.exists() and os.path.samestat(os.fstat(handle.fileno()), path.stat()):
                yield handle
                return
