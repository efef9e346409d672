"""Training without a teacher: fine-tuning a pruned student on the task's own objective, and training a
small network from scratch with the teacher's recipe.

"Fine-tuned on ground truth" (Li et al., Network Slimming, Torch-Pruning's usual recipe) means: continue with the
loss the network was trained with. For paired tasks that is pix2pix's L1 to the target plus the conditional GAN
loss; unpaired tasks (horse2zebra) have no ground truth, so their baselines continue the CycleGAN objective
(adversarial + cycle + identity) with a copy of the teacher's reverse generator and discriminators
(alap.objectives), which train alongside as they did for the teacher. No teacher output is ever used.
Model selection mirrors distillation where it can do so without a teacher: paired tasks keep the student with
the best validation PSNR against the ground truth at the same checkpoints distillation validates at; unpaired
tasks keep the last student (validating against a teacher would make them teacher-guided).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from alap.compress.distill import BestStudent, validate
from alap.config import TrainParams
from alap.loop import run_steps
from alap.objectives import make_objective
from alap.train import linear_decay


@dataclass
class TuneResult:
    """The trained student (eval mode) and which step it comes from; ``best_psnr`` for paired tasks only."""

    student: nn.Module
    steps: int
    best_step: int
    best_psnr: float | None
    start_psnr: float | None


def finetune_on_objective(
    student: nn.Module,
    objective_kind: str,
    aux: dict[str, nn.Module],
    train: TrainParams,
    lr: float,
    steps: int,
    batches: Iterator[dict[str, Any]],
    val_batches: list[dict[str, Any]],
    paired: bool,
    state_path: str | os.PathLike,
    checkpoint_every: int,
) -> TuneResult:
    """Fine-tune ``student`` (in place) on the task objective at constant ``lr``; resumable from ``state_path``.

    ``aux`` must be the caller's own copy of the teacher's auxiliary networks: they are trained here.
    """
    objective = make_objective(objective_kind, student, aux, train)
    for optimizer in objective.optimizers().values():
        for group in optimizer.param_groups:
            group["lr"] = lr
    state: dict[str, Any] = {**objective.modules(), **objective.optimizers()}
    best = BestStudent() if paired else None
    start_psnr = None
    if best is not None:
        state["best"] = best
        start_psnr = validate(student, student, val_batches, paired=True)
        if not Path(state_path).exists():
            best.offer(0, start_psnr, student)
    objective.train()

    def step_fn(step: int) -> dict[str, float]:
        losses = objective.step(next(batches))
        done = step + 1
        if best is not None and (done % checkpoint_every == 0 or done == steps):
            best.offer(done, validate(student, student, val_batches, paired=True), student)
        return losses

    run_steps(step_fn, state, steps, Path(state_path), checkpoint_every, desc="finetune")
    if best is not None:
        student.load_state_dict(best.weights)
    student.eval()
    return TuneResult(student, steps, best.step if best is not None else steps,
                      best.psnr if best is not None and math.isfinite(best.psnr) else None, start_psnr)


def train_from_scratch(
    generator: nn.Module,
    objective_kind: str,
    aux: dict[str, nn.Module],
    train: TrainParams,
    steps: int,
    batches: Iterator[dict[str, Any]],
    state_path: str | os.PathLike,
) -> TuneResult:
    """Train a freshly initialised ``generator`` exactly as the teacher was trained (alap.train): same objective,
    optimiser, learning-rate schedule and number of steps; the last weights are kept, as for the teacher."""
    objective = make_objective(objective_kind, generator, aux, train)
    schedulers = linear_decay(objective, steps, train.lr_decay_from)
    objective.train()

    def step_fn(_: int) -> dict[str, float]:
        losses = objective.step(next(batches))
        for scheduler in schedulers.values():
            scheduler.step()
        return losses

    state = {**objective.modules(), **objective.optimizers(), **schedulers}
    run_steps(step_fn, state, steps, Path(state_path), train.checkpoint_every, desc="train from scratch")
    generator.eval()
    return TuneResult(generator, steps, steps, None, None)
