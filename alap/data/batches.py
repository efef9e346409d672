"""Endless, seeded mini-batch streams for step-based training loops.

Training here counts optimiser steps, not epochs (tiny synthetic sets and huge real ones alike), so the loops
draw from an endless stream that reshuffles every pass with a seeded generator.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset


def endless_batches(dataset: Dataset, batch_size: int, seed: int, device: torch.device) -> Iterator[dict[str, Any]]:
    """Yield shuffled batches forever, tensors moved to ``device``; the last short batch of a pass is dropped."""
    if len(dataset) < batch_size:  # type: ignore[arg-type]
        raise ValueError(f"dataset has {len(dataset)} items, fewer than batch_size={batch_size}")  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed)
    while True:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
        for batch in loader:
            yield to_device(batch, device)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
