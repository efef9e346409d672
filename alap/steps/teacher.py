"""The ``import@<task>`` step: a user's generator file becomes the task's teacher, as ``train@`` would make it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alap import io
from alap.config import Params
from alap.device import resolve_device
from alap.gan_aux import save_aux
from alap.metrics.baselines import fid_of_identity, psnr_vs_mean_image
from alap.metrics.fid import InceptionFeatures
from alap.models import arch_of, save_checkpoint
from alap.models.reference import import_generator
from alap.paths import DEFAULT_TORCH_HOME, TaskPaths
from alap.task import Task
from alap.timing import stage_times

log = logging.getLogger(__name__)


def import_teacher(
    params: Params, task_name: str, paths: TaskPaths | None = None, torch_home: Path = DEFAULT_TORCH_HOME
) -> dict:
    """The ``import@<task>`` step: the task's teacher file becomes ``teacher.pt`` (and CycleGAN's reverse
    generator, when given, ``teacher_aux.pt``), as if ``train@<task>`` had trained them; nothing is trained. An
    unpaired task's identity baseline needs the FID Inception weights in ``torch_home`` (``alap weights``)."""
    started = time.perf_counter()
    task = Task.from_params(params, task_name)
    spec = task.params.teacher
    if spec is None:
        raise ValueError(
            f"tasks.{task_name} names no teacher file (tasks.{task_name}.teacher.checkpoint); "
            f"its teacher is trained by train@{task_name}"
        )
    paths = paths or TaskPaths(task_name)
    options = {"kind": spec.kind, "norm": spec.norm, "norm_affine": spec.norm_affine, "dropout": spec.dropout}
    teacher, meta = import_generator(spec.checkpoint, task=task_name, key=spec.key, **options)
    task.check_fits(arch_of(teacher), spec.checkpoint)
    aux, archs = {}, {}
    if spec.reverse is not None:
        if task.objective_kind != "cycle":
            raise ValueError(
                f"tasks.{task_name}.teacher.reverse: only unpaired (CycleGAN) tasks use a reverse "
                f"generator; layout {task.params.layout!r} has none"
            )
        reverse, _ = import_generator(spec.reverse, task=task_name, key=spec.reverse_key, **options)
        task.check_fits(arch_of(reverse), spec.reverse, task.channels[::-1])
        aux["G_B"], archs["G_B"] = reverse, arch_of(reverse)
    record = {
        "task": task_name,
        **{k: v for k, v in meta.items() if k != "task"},
        "reverse_file": None if spec.reverse is None else str(spec.reverse),
    }
    device = resolve_device(params.device)
    baseline = psnr_vs_mean_image(task, teacher.to(device), device)
    teacher.cpu()
    if baseline is not None:
        record["psnr_test"], record["psnr_mean_image"] = baseline
    if task.objective_kind == "cycle":
        record.update(fid_of_identity(task, InceptionFeatures(torch_home, device), params.evaluate.kid_subset_size))
    save_checkpoint(
        paths.teacher, teacher, arch_of(teacher), {**meta, "role": "teacher", "image_size": task.image_size}
    )
    save_aux(paths.teacher_aux, task_name, archs, aux)
    io.write_json(paths.teacher_source, {**record, **stage_times(time.perf_counter() - started)})
    log.info(
        "imported %s as the %s teacher (%s)%s",
        spec.checkpoint,
        task_name,
        arch_of(teacher)["kind"],
        "" if spec.reverse is None else f", with the reverse generator {spec.reverse}",
    )
    return record
