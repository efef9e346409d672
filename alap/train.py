"""Teacher training: the uncompressed generator that condense, prune and distill start from.

Writes the A->B generator as an alap checkpoint (``teacher.pt``), the rest of the GAN (discriminators, and the
reverse generator for CycleGAN) as ``teacher_aux.pt`` so condensing can continue the same objective, and a
small metrics file comparing the teacher with its floors on the test split (alap/metrics/baselines.py): the
mean-image predictor's PSNR where there is ground truth, and for unpaired tasks the identity's FID/KID (the
untranslated inputs against the real target images), to read next to the teacher's ``fid`` from evaluate.

A CycleGAN teacher is the generator with the best validation FID among its checkpoints, not its last step
(alap/selection.py): with no ground truth to pull it back, its last step is a lottery. The same seed, data and
recipe ended at 0.52x the identity's FID on one thread and at 0.87x on two, where only the order of
floating-point sums differs (reports/horse2zebra.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alap import io
from alap.config import Params
from alap.data.batches import endless_batches
from alap.device import resolve_device
from alap.dist import current_world
from alap.gan_aux import aux_archs, build_aux, save_aux
from alap.loop import KeepBest, fit, params_key
from alap.metrics.baselines import fid_of_identity, psnr_vs_mean_image
from alap.metrics.fid import InceptionFeatures
from alap.models import build_generator, save_checkpoint
from alap.objectives import Objective, make_objective
from alap.paths import DEFAULT_TORCH_HOME, TaskPaths
from alap.seeding import seeded
from alap.selection import selection_record, val_fid_validator
from alap.task import Task
from alap.timing import stage_times

log = logging.getLogger(__name__)


def build_gan(task: Task, params: Params, device: torch.device) -> tuple[nn.Module, dict, dict[str, nn.Module]]:
    """Fresh teacher generator (with its arch dict) and the auxiliary networks its objective needs."""
    arch = task.teacher_arch(params.model)
    generator = build_generator(arch).to(device)
    aux = {name: build_aux(spec) for name, spec in aux_archs(task, arch, params).items()}
    return generator, arch, {k: m.to(device) for k, m in aux.items()}


def linear_decay(
    objective: Objective, total_steps: int, decay_from: float
) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """Constant learning rate, then linear decay to zero over the last ``1 - decay_from`` of the steps (pix2pix)."""
    start = int(total_steps * decay_from)
    span = max(1, total_steps - start)

    def factor(step: int) -> float:
        return 1.0 - max(0, step - start) / span

    return {f"sched_{k}": torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in objective.optimizers().items()}


@dataclass(frozen=True)
class TrainResult:
    steps: int
    wall_s: float
    psnr_test: float | None
    psnr_mean_image: float | None


def train_teacher(
    params: Params, task_name: str, paths: TaskPaths | None = None, torch_home: Path = DEFAULT_TORCH_HOME
) -> TrainResult | None:
    """Train the teacher of ``task_name``; resumes from its resume checkpoint after a kill. In a multi-process run
    (alap/dist.py) every rank trains and rank 0 alone writes and returns; the others return None. An unpaired
    task's identity baseline needs the FID Inception weights in ``torch_home`` (``alap weights``)."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    train_set = task.dataset("train")
    with seeded(params.seed):
        generator, arch, aux = build_gan(task, params, device)
    settings = task.train
    objective = make_objective(task.objective_kind, generator, aux, settings)
    total = settings.steps
    schedulers = linear_decay(objective, total, settings.lr_decay_from)
    batches = endless_batches(train_set, settings.batch_size, params.seed, device)
    unpaired = task.objective_kind == "cycle"
    inception = InceptionFeatures(torch_home, device) if unpaired else None
    keep_best = KeepBest(generator, val_fid_validator(task, generator, inception, device)) if unpaired else None
    objective.train()
    selection = ["keep the best validation FID"] if unpaired else []  # the resume state then holds keep_best too
    key = params_key(params.seed, params.data, task.params, params.model, settings, *selection)
    log.info("training %s teacher (%s, %d steps, device %s)", task_name, arch["kind"], total, device)
    with objective.distributed():
        fitted = fit(
            lambda batch, _: objective.step(batch),
            batches,
            objective.state(),
            steps=total,
            checkpoint_every=settings.checkpoint_every,
            state_path=paths.resume_state("train", key),
            desc=f"train {task_name}",
            schedulers=schedulers,
            keep_best=keep_best,
        )
    if not current_world().is_main:
        return None

    meta = {
        "task": task_name,
        "role": "teacher",
        "steps": total,
        "image_size": task.image_size,
        "final_losses": fitted.history[-1] if fitted.history else {},
    }
    save_checkpoint(paths.teacher, generator, arch, meta)
    save_aux(paths.teacher_aux, task_name, aux_archs(task, arch, params), aux)

    psnr_test, psnr_mean = psnr_vs_mean_image(task, generator, device) or (None, None)
    unpaired_record = {}  # the identity baseline and which checkpoint became the teacher
    if unpaired:
        identity = fid_of_identity(task, inception, params.evaluate.kid_subset_size)
        unpaired_record = {**identity, "selected": selection_record(keep_best)}
    result = TrainResult(steps=total, wall_s=round(fitted.wall_s, 1), psnr_test=psnr_test, psnr_mean_image=psnr_mean)
    io.write_json(
        paths.train_metrics,
        {
            "task": task_name,
            **result.__dict__,
            "psnr_gain_db": None if psnr_test is None else psnr_test - psnr_mean,
            **unpaired_record,
            **stage_times(fitted.wall_s),
        },
    )
    log.info("%s teacher: %s", task_name, result)
    return result
