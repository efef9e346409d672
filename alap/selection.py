"""Which checkpoint of an unpaired (CycleGAN) training run is kept: the one with the best validation FID.

With no ground truth to pull it back, a CycleGAN generator's FID swings by 100-300 points between checkpoints 100
steps apart, also late in a run (reports/horse2zebra.md), so its last step is a lottery. The teacher
(alap/train.py), condensing (alap/compress/condense.py) and the benchmark's fine-tuning on the CycleGAN objective
(alap/bench/finetune.py) all keep their best validation FID instead, by this one validator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from alap.data.errors import DataError
from alap.loop import KeepBest
from alap.metrics.fid import InceptionFeatures, dataset_features, fid_from_features
from alap.metrics.pixel import round_to_8bit
from alap.task import Task

ValFid = Callable[[nn.Module], Callable[[], float]]
"""What picks a checkpoint: given a generator, its validator (``partial(val_fid_validator, task, ...)``)."""


def val_fid_validator(
    task: Task, generator: nn.Module, inception: InceptionFeatures, device: torch.device
) -> Callable[[], float]:
    """Minus the FID of ``generator``'s 8-bit translations of the val inputs against the real val targets, for
    :class:`alap.loop.KeepBest` (higher is better). The val split is small, so the value is biased upwards, but
    the same images score every checkpoint. The inputs are loaded once here: a DataLoader during training would
    draw from torch's random state and change the run."""
    val_set = task.dataset("val", for_eval=True)
    sizes = {"inputs (A)": len(val_set), "real targets (B)": len(val_set.real_targets())}
    if min(sizes.values()) < 2:  # one image has no covariance: the FID is undefined
        raise DataError(
            f"{task.params.root}: task {task.name!r} has a val split of {sizes}; an unpaired task keeps the "
            "checkpoint with the best validation FID, which needs at least 2 images of each domain "
            "(a carved val split takes 10% of the training images)"
        )
    inputs = torch.cat([batch["A"] for batch in DataLoader(val_set, batch_size=64)]).to(device)
    real = dataset_features(inception, val_set.real_targets(), "B", 16, "real val targets")

    def validate() -> float:
        was_training = generator.training
        generator.eval()
        with torch.no_grad():
            fake = torch.cat([generator(chunk) for chunk in inputs.split(16)])
        generator.train(was_training)
        return -fid_from_features(inception.features(round_to_8bit(fake)), real)

    return validate


def selection_record(keep_best: KeepBest) -> dict[str, Any]:
    """The kept step, its validation FID and every validation as ``[step, fid]``, for a stage's metrics JSON."""
    return {
        "step": keep_best.step,
        "val_fid": -keep_best.value,
        "val_fids": [[step, -value] for step, value in keep_best.history],  # KeepBest holds minus the FID
    }
