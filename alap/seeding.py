"""Seeding that stays reproducible when several runs share one process (a sweep on the thread runner).

torch's module initialisers draw from the process-global generator. Two threads that each call
``torch.manual_seed`` and then build a network interleave their draws, and neither network is then a function
of its own seed. :func:`seeded` holds a process-wide lock from the seeding to the end of the block, so every
draw inside the block comes from that block's seed alone.

Draws made after the block (dropout during training) still come from the shared generator: a network trained
with dropout is bitwise reproducible in its own process (DVC stages, Dask worker processes), not next to other
threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_SEED_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators (CPU and CUDA) and keep other threads from reseeding or drawing from a
    seeded block of their own until this block ends. The generators are left seeded, as ``manual_seed`` would."""
    with _SEED_LOCK:
        torch.manual_seed(seed)
        yield
