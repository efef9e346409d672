"""Adversarial loss shared by teacher training, condensing and (optionally) distillation."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

GanMode = Literal["lsgan", "vanilla"]


class GANLoss(nn.Module):
    """The pix2pix/CycleGAN adversarial loss: least squares (``lsgan``) or binary cross-entropy (``vanilla``).

    Targets are built to the shape of the discriminator's patch map, so one instance serves any PatchGAN depth.
    """

    def __init__(self, mode: GanMode = "lsgan") -> None:
        super().__init__()
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"GAN mode must be 'lsgan' or 'vanilla', got {mode!r}")
        self.mode = mode
        self.criterion: nn.Module = nn.MSELoss() if mode == "lsgan" else nn.BCEWithLogitsLoss()

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        return self.criterion(prediction, target)
