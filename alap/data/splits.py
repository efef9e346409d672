"""Splits a dataset does not ship, carved from the files it does.

Published data often has no validation split (CycleGAN ships trainA/trainB/testA/testB, pix2pix folders often
train/test only), and a user's own folder of images has no splits at all. Such a split is carved from the
files that are there by a seeded permutation of their sorted names: the carve depends only on the seed and the
file list, never on which split is opened first, so train and val stay disjoint in every stage and every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alap.data.errors import DataError

SPLITS = ("train", "val", "test")
CARVE_FRACTION = 0.1  # of the items, for each carved split (at least one item)

log = logging.getLogger("alap.data")
_announced: set[tuple[str, int, int, tuple[str, ...]]] = set()  # carves logged so far: each is logged once


def carve(names: list[str], seed: int, parts: tuple[str, ...], folder: Path) -> dict[str, list[str]]:
    """``names`` (the items of ``folder``) dealt into each split of ``parts`` (about 10% each, at least one)
    and "train" (the rest); each list sorted. Fewer items than splits to fill is a DataError."""
    names = sorted(names)
    if len(names) < len(parts) + 1:
        raise DataError(
            f"{folder}: {len(names)} item(s), too few to carve a {' and a '.join(parts)} split from "
            f"(at least {len(parts) + 1} needed); add a {' and a '.join(parts)} folder or more items"
        )
    share = max(1, round(len(names) * CARVE_FRACTION))
    order = np.random.default_rng(seed).permutation(len(names))
    dealt = {part: order[i * share : (i + 1) * share] for i, part in enumerate(parts)}
    dealt["train"] = order[len(parts) * share :]
    key = (str(folder), seed, len(names), parts)
    if key not in _announced:
        _announced.add(key)
        log.info(
            "%s: no %s split; carved %s from its %d items (seed %d); %d left for train",
            folder,
            " or ".join(parts),
            " and ".join(f"{share} as {part}" for part in parts),
            len(names),
            seed,
            len(dealt["train"]),
        )
    return {split: sorted(names[i] for i in indices) for split, indices in dealt.items()}


@dataclass(frozen=True)
class Share:
    """Which part of a folder's items a split serves when that split has no folder of its own."""

    split: str  # the split served: "train" (what the carve leaves) or one of ``carved``
    carved: tuple[str, ...]  # the splits carved out of the folder
    seed: int

    def of(self, names: list[str], folder: Path) -> list[str]:
        return carve(names, self.seed, self.carved, folder)[self.split]
