"""The floors a teacher must clear, reported by the train (and import) stage before compression starts.

- Paired tasks (and synthetic horse2zebra's hidden ground truth): PSNR of the generator and of the mean-image
  predictor (always output the average training target).
- Unpaired tasks: FID/KID of the identity, i.e. the untranslated test inputs scored against the same real
  target-domain test images as the translations. A CycleGAN whose FID is not well below its inputs' has not
  learned the translation (horse2zebra once trained to FID 459 against an identity baseline of 437), and PSNR
  cannot say so: it punishes stripes out of phase and rewards a blur.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alap.metrics.fid import InceptionFeatures, dataset_features, fid_from_features, kid_from_features
from alap.metrics.pixel import psnr

if TYPE_CHECKING:
    from alap.task import Task


@torch.no_grad()
def generator_psnr(generator: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 16) -> float:
    """Mean per-image PSNR (dB) of ``generator(A)`` against ``B``; the generator is left in the mode it had."""
    was_training = generator.training
    generator.eval()
    scores = [
        psnr(generator(b["A"].to(device)).clamp(-1, 1), b["B"].to(device)).cpu()
        for b in DataLoader(dataset, batch_size=batch_size)
    ]
    generator.train(was_training)
    return float(torch.cat(scores).mean())


@torch.no_grad()
def mean_image_psnr(train_set: Dataset, test_set: Dataset, batch_size: int = 64) -> float:
    """Mean per-image PSNR (dB) on ``test_set`` of predicting the mean training target for every input."""
    total, count = None, 0
    for b in DataLoader(train_set, batch_size=batch_size):
        total = b["B"].sum(0) if total is None else total + b["B"].sum(0)
        count += b["B"].shape[0]
    mean_image = total / count
    scores = [psnr(mean_image.expand_as(b["B"]), b["B"]) for b in DataLoader(test_set, batch_size=batch_size)]
    return float(torch.cat(scores).mean())


def psnr_vs_mean_image(task: Task, generator: nn.Module, device: torch.device) -> tuple[float, float] | None:
    """``task``'s test PSNR of ``generator`` and of the mean training target, or None when its test inputs have
    no ground truth (real unpaired data, input images alone). Trained and imported teachers report it alike."""
    if not (task.params.paired or task.params.source == "synthetic"):
        return None
    test_set = task.dataset("test", for_eval=True)
    train_targets = task.dataset("train", for_eval=True).real_targets()  # whole images, like the test split
    return generator_psnr(generator, test_set, device), mean_image_psnr(train_targets, test_set)


def fid_of_identity(task: Task, inception: InceptionFeatures, kid_subset_size: int, batch_size: int = 16) -> dict:
    """``fid_identity``/``kid_identity``: the untranslated test inputs (domain A) against the real domain-B test
    images that the evaluate stage scores the teacher's translations against, with what they were measured on."""
    test_set = task.dataset("test", for_eval=True)
    identity = dataset_features(inception, test_set, "A", batch_size, "untranslated")
    real = dataset_features(inception, test_set.real_targets(), "B", batch_size, "real")
    subset = min(kid_subset_size, len(identity), len(real))
    kid, _ = kid_from_features(identity, real, subset_size=subset)
    return {
        "fid_identity": fid_from_features(identity, real),
        "kid_identity": kid,
        "fid_identity_measured_on": {
            "samples": len(identity),
            "real_samples": len(real),
            "kid_subset_size": subset,
            "fid_reference": "real target-domain test images",
            "weights": inception.provenance,
        },
    }
