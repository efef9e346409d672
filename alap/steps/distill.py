"""The ``distill@<task>-<s>`` step: the pruned student fine-tuned from its teacher into ``student.pt``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from alap import io
from alap.compress.distill import distill
from alap.compress.params import DistillParams
from alap.config import Params
from alap.data.batches import endless_batches, to_device
from alap.device import resolve_device
from alap.dist import current_world
from alap.gan_aux import stage_aux
from alap.loop import params_key
from alap.models import arch_of, save_checkpoint
from alap.paths import TaskPaths
from alap.task import Task
from alap.timing import stage_times

log = logging.getLogger(__name__)

TEACHER_FILES = {"condensed": "condensed", "original": "teacher"}


def distill_point(
    params: Params, task_name: str, sparsity: float | None, point_dir: Path, paths: TaskPaths | None = None
) -> dict | None:
    """Fine-tune ``point_dir/pruned.pt`` from the teacher chosen in params into ``point_dir/student.pt``. In a
    multi-process run (alap/dist.py) rank 0 alone writes and returns; the others return None."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    student, pruned_meta = task.load_generator(point_dir / "pruned.pt", device)
    choice = params.distill.teacher
    teacher_path = point_dir / "pruned.pt" if choice == "pruned" else getattr(paths, TEACHER_FILES[choice])
    teacher, _ = task.load_generator(teacher_path, device)
    discriminator = None
    settings = params.distill
    if settings.lambda_gan > 0 and not task.params.has_targets:
        # The discriminator learns what real target images look like; a folder of plain images has none, so the
        # student learns from the teacher alone, as lambda_target is skipped on unpaired tasks.
        log.info("%s: layout images has no target images, the adversarial term (lambda_gan) does not apply", task_name)
        settings = DistillParams.model_validate({**settings.model_dump(), "lambda_gan": 0.0})
    if settings.lambda_gan > 0:
        aux = stage_aux(task, params, arch_of(teacher), paths, device)
        discriminator = aux["D"] if task.params.paired else aux["D_A"]
    batches = endless_batches(task.dataset("train"), task.train.batch_size, params.seed + 2, device)
    val_batches = list(_batches_of(task.dataset("val"), params.distill.val_batch_size, device))
    key = params_key(point_dir / "pruned.pt", teacher_path, settings, task.train.batch_size)
    result = distill(
        student,
        teacher,
        batches,
        val_batches,
        settings,
        task.params.paired,
        task.example_inputs(device),
        paths.resume_state(f"distill-{point_dir.name}", key),
        discriminator=discriminator,
    )
    if not current_world().is_main:
        return None
    report = {
        "task": task_name,
        "sparsity": sparsity,
        "teacher": choice,
        **stage_times(result.wall_s),
        "best_step": result.best_step,
        "val_psnr_best": result.best_psnr,
        "val_psnr_before": result.start_psnr,
        "val_psnr_teacher": result.teacher_psnr,
        "validation": result.validation,
    }
    save_checkpoint(
        point_dir / "student.pt",
        result.student,
        arch_of(result.student),
        {
            **pruned_meta,
            "role": "student",
            "distill": settings.model_dump(mode="json"),
            "best_step": result.best_step,
        },
    )
    io.write_json(point_dir / "distill_report.json", report)
    return report


def _batches_of(dataset, batch_size: int, device: torch.device):
    for batch in DataLoader(dataset, batch_size=batch_size):
        yield to_device(batch, device)
