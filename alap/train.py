"""Teacher training: the uncompressed generator that condense, prune and distill start from.

Writes the A->B generator as an alap checkpoint (``teacher.pt``), the rest of the GAN (discriminators, and the
reverse generator for CycleGAN) as ``teacher_aux.pt`` so condensing can continue the same objective, and a
small metrics file comparing the teacher with the mean-image predictor on the test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alap import io
from alap.config import Params
from alap.data.batches import endless_batches
from alap.device import resolve_device
from alap.metrics.baselines import generator_psnr, mean_image_psnr
from alap.loop import run_steps
from alap.models import NLayerDiscriminator, build_generator, save_checkpoint
from alap.objectives import Objective, make_objective
from alap.paths import TaskPaths
from alap.task import Task

log = logging.getLogger(__name__)

AUX_FORMAT = "alap-aux/1"


def build_gan(task: Task, params: Params, device: torch.device) -> tuple[nn.Module, dict, dict[str, nn.Module]]:
    """Fresh teacher generator (with its arch dict) and the auxiliary networks its objective needs."""
    input_nc, output_nc = task.channels
    arch = task.teacher_arch(params.model)
    generator = build_generator(arch).to(device)
    d = params.model.discriminator
    if task.objective_kind == "pix2pix":
        aux = {"D": NLayerDiscriminator(input_nc + output_nc, ndf=d.ndf, n_layers=d.n_layers, norm=arch["norm"])}
    else:
        reverse_arch = dict(arch, input_nc=output_nc, output_nc=input_nc)
        aux = {
            "G_B": build_generator(reverse_arch),
            "D_A": NLayerDiscriminator(output_nc, ndf=d.ndf, n_layers=d.n_layers, norm=arch["norm"]),
            "D_B": NLayerDiscriminator(input_nc, ndf=d.ndf, n_layers=d.n_layers, norm=arch["norm"]),
        }
    return generator, arch, {k: m.to(device) for k, m in aux.items()}


def linear_decay(objective: Objective, total_steps: int, decay_from: float) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """Constant learning rate, then linear decay to zero over the last ``1 - decay_from`` of the steps (pix2pix)."""
    start = int(total_steps * decay_from)
    span = max(1, total_steps - start)

    def factor(step: int) -> float:
        return 1.0 - max(0, step - start) / span

    return {f"sched_{k}": torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in objective.optimizers().items()}


def params_key(*parts: object) -> str:
    """Short stable hash of the inputs that define a run, to key its resume checkpoint."""
    blob = json.dumps([p.model_dump(mode="json") if hasattr(p, "model_dump") else p for p in parts], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrainResult:
    steps: int
    wall_s: float
    psnr_test: float | None
    psnr_mean_image: float | None


def train_teacher(params: Params, task_name: str, paths: TaskPaths | None = None) -> TrainResult:
    """Train the teacher of ``task_name``; resumes from its resume checkpoint after a kill."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    train_set = task.dataset("train")
    generator, arch, aux = build_gan(task, params, device)
    objective = make_objective(task.objective_kind, generator, aux, params.train)
    total = params.train.steps_for(task.params)
    schedulers = linear_decay(objective, total, params.train.lr_decay_from)
    batches = endless_batches(train_set, params.train.batch_size, params.seed, device)
    objective.train()

    def step(_: int) -> dict[str, float]:
        losses = objective.step(next(batches))
        for sched in schedulers.values():
            sched.step()
        return losses

    state = {**objective.modules(), **objective.optimizers(), **schedulers}
    key = params_key(params.seed, params.data, task.params, params.model, params.train)
    log.info("training %s teacher (%s, %d steps, device %s)", task_name, arch["kind"], total, device)
    started = time.perf_counter()
    history = run_steps(step, state, total, paths.resume_state("train", key), params.train.checkpoint_every,
                        desc=f"train {task_name}")
    wall = time.perf_counter() - started

    meta = {"task": task_name, "role": "teacher", "steps": total, "image_size": task.image_size,
            "final_losses": history[-1] if history else {}}
    save_checkpoint(paths.teacher, generator, arch, meta)
    io.torch_save({"format": AUX_FORMAT, "task": task_name,
                   "archs": {k: _aux_arch(k, arch, task) for k in aux},
                   "state_dicts": {k: m.state_dict() for k, m in aux.items()}}, paths.teacher_aux)

    psnr_test = psnr_mean = None
    if task.params.paired or task.params.source == "synthetic":
        test_set = task.dataset("test", for_eval=True)
        train_targets = task.dataset("train")
        psnr_test = generator_psnr(generator, test_set, device)
        psnr_mean = mean_image_psnr(train_targets, test_set)
    result = TrainResult(steps=total, wall_s=round(wall, 1), psnr_test=psnr_test, psnr_mean_image=psnr_mean)
    io.write_json(paths.train_metrics, {"task": task_name, **result.__dict__,
                                        "psnr_gain_db": None if psnr_test is None else psnr_test - psnr_mean})
    log.info("%s teacher: %s", task_name, result)
    return result


def _aux_arch(name: str, arch: dict, task: Task) -> dict:
    """Enough to rebuild each auxiliary network: generators by arch dict, discriminators by their input width."""
    input_nc, output_nc = task.channels
    if name == "G_B":
        return dict(arch, input_nc=output_nc, output_nc=input_nc)
    return {"kind": "patchgan", "input_nc": {"D": input_nc + output_nc, "D_A": output_nc, "D_B": input_nc}[name]}
