"""Seeded blocks in concurrent threads draw only from their own seed (the thread-runner sweep's teachers)."""

from __future__ import annotations

import threading
import time

import torch

from alap.seeding import seeded


def _draws(seed: int, out: dict[int, torch.Tensor], started: threading.Barrier | None = None) -> None:
    """Two draws with a pause between them, in which another thread gets to run."""
    if started is not None:
        started.wait()
    with seeded(seed):
        first = torch.rand(4)
        time.sleep(0.05)
        out[seed] = torch.cat([first, torch.rand(4)])


def test_concurrent_seeded_blocks_match_solo_runs() -> None:
    solo: dict[int, torch.Tensor] = {}
    for seed in (0, 1):
        _draws(seed, solo)
    together: dict[int, torch.Tensor] = {}
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_draws, args=(seed, together, barrier)) for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed in (0, 1):
        torch.testing.assert_close(together[seed], solo[seed], rtol=0, atol=0)


def test_seeded_leaves_the_generator_seeded_like_manual_seed() -> None:
    with seeded(7):
        pass
    after_block = torch.rand(3)
    torch.manual_seed(7)
    torch.testing.assert_close(after_block, torch.rand(3), rtol=0, atol=0)
