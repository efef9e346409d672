"""Distill: fine-tune the pruned student from a frozen teacher, keeping the best student on the validation split.

ALAP-AE's last stage reuses the *condensed* network as the teacher; "original" (the uncompressed teacher) and
"pruned" (the student before fine-tuning, as in the related patent) are the ablation's alternatives -- the caller
passes whichever module ``DistillParams.teacher`` names. Losses (weights in :class:`DistillParams`):
- L1 between student and teacher outputs;
- L1 between student output and ground truth, for paired tasks only (CycleGAN tasks have none);
- L1 between teacher features and student features mapped through learned 1x1 convs (GAN Compression), at the
  named layers (alap.compress.features); the adapters are training-only and never part of the student;
- optionally the adversarial loss of the teacher's discriminator (conditional on the input for paired tasks, as
  in pix2pix; unconditional for CycleGAN's ``D_A``), which keeps training against the student.
Validation runs before the first step and at every resume checkpoint, just before the save (alap.loop.fit), so the
best-so-far student is saved atomically together with the training state and survives a kill: PSNR vs ground
truth for paired tasks, vs the teacher's output for unpaired ones.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from alap.compress.features import FeatureTap, feature_modules, make_adapters
from alap.compress.params import DistillParams
from alap.data.batches import BatchStream
from alap.dist import replicated
from alap.loop import KeepBest, fit
from alap.losses import GANLoss
from alap.metrics.pixel import PSNR_CAP_DB, psnr
from alap.models import arch_of

log = logging.getLogger(__name__)


@dataclass
class DistillResult:
    """``student`` holds the best validated weights (eval mode); PSNRs in dB on the validation batches; ``wall_s``
    counts every run, when resumed."""

    student: nn.Module
    history: list[dict[str, float]]
    best_step: int
    best_psnr: float
    start_psnr: float
    teacher_psnr: float | None
    validation: list[list[float]]
    wall_s: float


@torch.no_grad()
def validate(student: nn.Module, teacher: nn.Module, batches: list[dict[str, Any]], paired: bool) -> float:
    """Mean per-image PSNR (capped at 100 dB) of the student vs ground truth (paired) or vs the teacher."""
    was = student.training
    student.eval()
    try:
        values = []
        for batch in batches:
            reference = batch["B"] if paired else teacher(batch["A"])
            values.append(psnr(student(batch["A"]).clamp(-1, 1), reference.clamp(-1, 1)).clamp(max=PSNR_CAP_DB))
    finally:
        student.train(was)
    return float(torch.cat(values).mean())


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: BatchStream,
    val_batches: list[dict[str, Any]],
    params: DistillParams,
    paired: bool,
    example_input: torch.Tensor,
    state_path: str | os.PathLike,
    discriminator: nn.Module | None = None,
) -> DistillResult:
    """Fine-tune ``student`` (in place) from the frozen ``teacher``; resumable from ``state_path``.

    ``batches`` is the resumable stream of training batches ``{"A", "B", ...}`` on the models' device;
    ``val_batches`` is the validation split as a list of such batches. ``discriminator`` (the teacher's D; for
    paired tasks it takes ``cat(A, image)``) is required when ``params.lambda_gan > 0`` and is trained alongside.
    """
    if not val_batches:
        raise ValueError("distill needs at least one validation batch to keep the best student")
    if params.lambda_gan > 0 and discriminator is None:
        raise ValueError("distill: lambda_gan > 0 needs the teacher's discriminator (pass discriminator=...)")
    if params.lambda_target > 0 and not paired:
        log.info("distill: unpaired task, the ground-truth loss (lambda_target) does not apply")
    teacher.eval()  # frozen: only ever run under no_grad, never optimised
    names = params.layers_for(arch_of(student)["kind"])
    adapters = make_adapters(student, teacher, names, example_input)
    student_tap = FeatureTap(feature_modules(student, names, example_input))
    teacher_tap = FeatureTap(feature_modules(teacher, names, example_input))
    betas = (params.beta1, 0.999)
    opt = torch.optim.Adam([*student.parameters(), *adapters.parameters()], lr=params.lr, betas=betas)
    state: dict[str, Any] = {"student": student, "adapters": adapters, "opt_student": opt}
    gan = GANLoss(params.gan_mode)
    if params.lambda_gan > 0:
        state["D"] = discriminator
        state["opt_D"] = torch.optim.Adam(discriminator.parameters(), lr=params.lr, betas=betas)
    best = KeepBest(student, lambda: validate(student, teacher, val_batches, paired))
    teacher_psnr = validate(teacher, teacher, val_batches, paired) if paired else None
    student.train()

    # what the training passes call: DDP replicas in a multi-process run (alap.dist.replicated), each adapter on
    # its own because each is called on its own; the discriminator under the student's loss is frozen: itself
    trainable = {"student": student, **{f"adapter.{n}": adapters[n] for n in names}}
    if params.lambda_gan > 0:
        trainable["D"] = discriminator

    def discriminate(disc: nn.Module, a: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return disc(torch.cat([a, image], 1) if paired else image)

    def step(batch: dict[str, Any], _: int) -> dict[str, float]:
        a = batch["A"]
        with torch.no_grad():
            target_t = teacher(a)
        out = trained["student"](a)
        losses: dict[str, torch.Tensor] = {}
        if params.lambda_teacher > 0:
            losses["teacher_l1"] = params.lambda_teacher * F.l1_loss(out, target_t)
        if params.lambda_target > 0 and paired:
            losses["target_l1"] = params.lambda_target * F.l1_loss(out, batch["B"])
        if names and params.lambda_feature > 0:
            losses["feature_l1"] = params.lambda_feature * sum(
                F.l1_loss(trained[f"adapter.{n}"](student_tap.features[n]), teacher_tap.features[n]) for n in names
            )
        if params.lambda_gan > 0:
            for p in discriminator.parameters():
                p.requires_grad_(False)
            losses["gan"] = params.lambda_gan * gan(discriminate(discriminator, a, out), True)
        total = torch.stack(list(losses.values())).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        report = {k: float(v.detach()) for k, v in losses.items()}
        if params.lambda_gan > 0:
            for p in discriminator.parameters():
                p.requires_grad_(True)
            real = batch["B"]
            train_d = trained["D"]
            fake = out.detach()
            loss_d = 0.5 * (gan(discriminate(train_d, a, real), True) + gan(discriminate(train_d, a, fake), False))
            state["opt_D"].zero_grad(set_to_none=True)
            loss_d.backward()
            state["opt_D"].step()
            report["D"] = float(loss_d.detach())
        return report

    try:
        with replicated(trainable) as trained:
            fitted = fit(
                step,
                batches,
                state,
                steps=params.steps,
                checkpoint_every=params.checkpoint_every,
                state_path=Path(state_path),
                desc="distill",
                keep_best=best,
                validate_every=params.validate_every,
            )
    finally:
        student_tap.remove()
        teacher_tap.remove()
    student.eval()
    start_psnr = best.history[0][1]
    log.info("distill: best validation PSNR %.2f dB at step %d (start %.2f dB)", best.value, best.step, start_psnr)
    return DistillResult(
        student,
        fitted.history,
        best.step,
        best.value,
        start_psnr,
        teacher_psnr,
        copy.deepcopy(best.history),
        fitted.wall_s,
    )
