"""Endless, seeded mini-batch streams for step-based training loops.

Training here counts optimiser steps, not epochs (tiny synthetic sets and huge real ones alike), so the loops
draw from an endless stream that reshuffles every pass with a seeded generator. The stream is resumable: it
records how many batches it has handed out, and a resumed run fast-forwards to the same place, so a killed and
resumed run sees exactly the batches an uninterrupted one would. In a multi-process run every rank draws the same
batches and keeps its share (alap.dist.World.shard), so the ranks' shares of a step make up the 1-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from alap.dist import current_world


class BatchStream:
    """Shuffled batches forever, tensors moved to ``device``; the last short batch of each pass is dropped. In a
    multi-process run each batch is this rank's share of ``batch_size`` items (the process group's world, as
    torch's DistributedSampler reads it)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device) -> None:
        if len(dataset) < batch_size:  # type: ignore[arg-type]
            raise ValueError(f"dataset has {len(dataset)} items, fewer than batch_size={batch_size}")  # type: ignore[arg-type]
        self.dataset, self.batch_size, self.seed, self.device = dataset, batch_size, seed, device
        self.world = current_world()
        self.consumed = 0
        self._batches = self._generate()

    def _generate(self) -> Iterator[dict[str, Any]]:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            yield from DataLoader(
                self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=generator
            )

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, Any]:
        self.consumed += 1
        return to_device(self.world.shard(next(self._batches)), self.device)

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restart the stream and skip the batches already used (cheap next to the training they fed)."""
        self._batches = self._generate()
        for _ in range(state["consumed"]):
            next(self._batches)
        self.consumed = state["consumed"]


def endless_batches(dataset: Dataset, batch_size: int, seed: int, device: torch.device) -> BatchStream:
    return BatchStream(dataset, batch_size, seed, device)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
