"""Training without a teacher: fine-tuning a pruned student on the task's own objective, and training a
small network from scratch with the teacher's recipe.

"Fine-tuned on ground truth" (Li et al., Network Slimming, Torch-Pruning's usual recipe) means: continue with the
loss the network was trained with. For paired tasks that is pix2pix's L1 to the target plus the conditional GAN
loss; unpaired tasks (horse2zebra) have no ground truth, so their baselines continue the CycleGAN objective
(adversarial + cycle + identity) with a copy of the teacher's reverse generator and discriminators
(alap.objectives), which train alongside as they did for the teacher. No teacher output is ever used.
Model selection mirrors distillation where it can do so without a teacher: paired tasks keep the student with
the best validation PSNR against the ground truth at the same checkpoints distillation validates at; unpaired
tasks keep the student with the best validation FID against the real target images there, as their teacher and
condensed network were kept (alap/selection.py; validating against a teacher would make them teacher-guided).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from alap.compress.distill import validate
from alap.config import TrainParams
from alap.data.batches import BatchStream
from alap.loop import KeepBest, fit
from alap.objectives import make_objective
from alap.selection import ValFid
from alap.train import linear_decay


@dataclass
class TuneResult:
    """The trained student (eval mode) and which step it comes from; ``best_psnr`` for paired tasks only;
    ``wall_s`` counts every run of the training, when resumed (alap.loop.fit)."""

    student: nn.Module
    steps: int
    best_step: int
    best_psnr: float | None
    start_psnr: float | None
    wall_s: float


def finetune_on_objective(
    student: nn.Module,
    objective_kind: str,
    aux: dict[str, nn.Module],
    train: TrainParams,
    lr: float,
    steps: int,
    batches: BatchStream,
    val_batches: list[dict[str, Any]],
    val_fid: ValFid | None,
    state_path: str | os.PathLike,
    checkpoint_every: int,
    validate_every: int,
) -> TuneResult:
    """Fine-tune ``student`` (in place) on the task objective at constant ``lr``; resumable from ``state_path``.

    ``aux`` must be the caller's own copy of the teacher's auxiliary networks: they are trained here. Paired tasks
    validate the PSNR on ``val_batches``; unpaired ones pass ``val_fid`` (a generator's validator of minus the
    validation FID, :func:`alap.selection.val_fid_validator` with the task bound).
    """
    objective = make_objective(objective_kind, student, aux, train)
    for optimizer in objective.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] = lr
    if val_fid is None:
        best = KeepBest(student, lambda: validate(student, student, val_batches, paired=True))
    else:
        best = KeepBest(student, val_fid(student))
    objective.train()
    fitted = fit(
        lambda batch, _: objective.step(batch),
        batches,
        objective.state(),
        steps=steps,
        checkpoint_every=checkpoint_every,
        state_path=Path(state_path),
        desc="finetune",
        keep_best=best,
        validate_every=validate_every,
    )
    student.eval()
    if val_fid is not None:
        return TuneResult(student, steps, best.step, None, None, fitted.wall_s)
    best_psnr = best.value if math.isfinite(best.value) else None
    return TuneResult(student, steps, best.step, best_psnr, best.history[0][1], fitted.wall_s)


def train_from_scratch(
    generator: nn.Module,
    objective_kind: str,
    aux: dict[str, nn.Module],
    train: TrainParams,
    steps: int,
    batches: BatchStream,
    state_path: str | os.PathLike,
    val_fid: ValFid | None,
) -> TuneResult:
    """Train a freshly initialised ``generator`` exactly as the teacher was trained (alap.train): same objective,
    optimiser, learning-rate schedule and number of steps; as for the teacher, the last weights are kept, or with
    ``val_fid`` (unpaired tasks) those with the best validation FID of every checkpoint."""
    keep_best = None if val_fid is None else KeepBest(generator, val_fid(generator))
    objective = make_objective(objective_kind, generator, aux, train)
    schedulers = linear_decay(objective, steps, train.lr_decay_from)
    objective.train()
    fitted = fit(
        lambda batch, _: objective.step(batch),
        batches,
        objective.state(),
        steps=steps,
        checkpoint_every=train.checkpoint_every,
        state_path=Path(state_path),
        desc="train from scratch",
        schedulers=schedulers,
        keep_best=keep_best,
    )
    generator.eval()
    kept = steps if keep_best is None else keep_best.step
    return TuneResult(generator, steps, kept, None, None, fitted.wall_s)
