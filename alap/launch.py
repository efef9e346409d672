"""Where a training command becomes N processes: the one place that builds the ``torchrun`` command line.

``alap train|condense|distill|compress`` (and so the DVC stages and the Prefect tasks that run them) call
:func:`run_distributed` with their work. With ``dist.nproc`` 1 the work runs here, as it always did. With more,
this process runs the same ``alap`` command line again under ``torchrun --standalone --nproc-per-node N`` and
waits; each worker (``WORLD_SIZE`` set by torchrun) joins the process group (alap/dist.py) and does the work on
its share of every batch. The command was validated here first, so bad input fails once, before any worker starts.

Imports no torch: the launching process only waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from alap.config import DistParams

T = TypeVar("T")


def launched() -> bool:
    """True in a worker that torchrun started (it sets ``WORLD_SIZE`` and ``RANK``)."""
    return "WORLD_SIZE" in os.environ


def launch_command(argv: Sequence[str], nproc: int) -> list[str]:
    """``alap <argv>`` as ``nproc`` workers under torchrun. ``--standalone``: a rendezvous on this host on a free
    port, so concurrent runs (a sweep, a rerun after a kill) never meet each other's workers. torchrun's parser
    reads ``argv`` too and refuses a flag that abbreviates two of its options (``--nproc``): alap's flags must not
    (``alap compress --processes``)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "alap.cli",
        *argv,
    ]


def run_distributed(dist: DistParams, device: str, argv: Sequence[str], work: Callable[[], T]) -> T | None:
    """Do ``work`` in this process (``dist.nproc`` 1), as one worker of a torchrun launch, or launch ``alap
    <argv>`` as ``dist.nproc`` workers and wait for them. Returns what ``work`` returned; ``None`` in the launching
    process and in workers other than rank 0, which write nothing. A failed launch exits with torchrun's status."""
    if launched():
        from alap.dist import joined

        with joined(dist.backend, device) as world:
            result = work()
            return result if world.is_main else None
    if dist.nproc == 1:
        return work()
    from alap.dist import check_launch

    check_launch(dist, device)
    status = subprocess.run(launch_command(argv, dist.nproc), check=False).returncode
    if status:
        raise SystemExit(status)
    return None
