"""Fault injection shared by the resume tests: a process killed part-way through its batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
