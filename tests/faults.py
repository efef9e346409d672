"""Fault injection shared by the resume tests: a process killed part-way through its batches, a full disk."""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from alap.data.batches import BatchStream


@contextmanager
def killed_at_batch(n: int) -> Iterator[None]:
    """Run the block as a process killed when a BatchStream is about to hand out batch ``n`` (counted from 0).

    The block must die there (anything else fails the test); afterwards BatchStream is whole again, so what runs
    next is a fresh process that has nothing but the resume file."""
    original = BatchStream.__next__

    def dying_next(self: BatchStream) -> dict[str, Any]:
        if self.consumed == n:
            raise RuntimeError("injected interruption")
        return original(self)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(RuntimeError, match="injected"):
        patch.setattr(BatchStream, "__next__", dying_next)
        yield


@contextmanager
def disk_full_on_write(name: str, nth: int = 1) -> Iterator[list[Path]]:
    """Make the ``nth`` atomic write (alap.io.atomic_path) of a file whose name matches ``name`` (a glob pattern)
    hit a full disk: its temporary
    file is a link to /dev/full, where the kernel fails every write with ENOSPC. Yields the temporary paths made
    full, so a test can check that they were removed."""
    real = tempfile.mkstemp
    full: list[Path] = []
    seen = 0

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        nonlocal seen
        fd, tmp = real(*args, **kwargs)
        prefix = kwargs.get("prefix", "")  # .<name>.<pid>.
        if prefix.startswith(".") and fnmatch.fnmatch(prefix[1:].rsplit(".", 2)[0], name):
            seen += 1
            if seen == nth:
                os.close(fd)
                os.unlink(tmp)
                os.symlink("/dev/full", tmp)
                fd = os.open(tmp, os.O_WRONLY)
                full.append(Path(tmp))
        return fd, tmp

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", mkstemp)
        yield full
    assert full, f"no atomic write of {name} number {nth} happened"
