"""The networks a generator trains against: discriminators, and CycleGAN's reverse generator.

Teacher training saves them beside the teacher (``teacher_aux.pt``) so condensing can continue the same
objective; an imported teacher has at most its reverse generator there, and every stage that trains further
starts the missing discriminators fresh (:func:`stage_aux`), so a user's generator needs nothing but itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from alap import io
from alap.config import Params
from alap.models import NLayerDiscriminator, build_generator
from alap.paths import TaskPaths
from alap.task import Task

log = logging.getLogger(__name__)

AUX_FORMAT = "alap-aux/1"


def aux_archs(task: Task, arch: dict, params: Params) -> dict[str, dict]:
    """What rebuilds each auxiliary network: the reverse generator by arch dict, discriminators by their shape."""
    input_nc, output_nc = task.channels
    d = params.discriminator_for(task.name)

    def patchgan(channels: int) -> dict:
        return {"kind": "patchgan", "input_nc": channels, "ndf": d.ndf, "n_layers": d.n_layers, "norm": arch["norm"]}

    if task.objective_kind == "teacher":
        return {}
    if task.objective_kind == "pix2pix":
        return {"D": patchgan(input_nc + output_nc)}
    return {
        "G_B": dict(arch, input_nc=output_nc, output_nc=input_nc),
        "D_A": patchgan(output_nc),
        "D_B": patchgan(input_nc),
    }


def build_aux(spec: dict) -> nn.Module:
    """A freshly initialised auxiliary network from its :func:`aux_archs` entry."""
    if spec["kind"] == "patchgan":
        return NLayerDiscriminator(spec["input_nc"], ndf=spec["ndf"], n_layers=spec["n_layers"], norm=spec["norm"])
    return build_generator(spec)


def save_aux(path: Path, task_name: str, archs: dict[str, dict], aux: dict[str, nn.Module]) -> None:
    io.torch_save(
        {
            "format": AUX_FORMAT,
            "task": task_name,
            "archs": archs,
            "state_dicts": {k: m.state_dict() for k, m in aux.items()},
        },
        path,
    )


def load_aux(path: Path, task_name: str, device: torch.device) -> dict[str, nn.Module]:
    """Rebuild the discriminators (and CycleGAN's reverse generator) saved next to a teacher."""
    saved = io.load_weights(
        path,
        f"the auxiliary GAN networks of task {task_name!r} (train@{task_name} or import@{task_name} writes them)",
        device,
    )
    if not isinstance(saved, dict) or saved.get("format") != AUX_FORMAT or saved.get("task") != task_name:
        found = (saved.get("format"), saved.get("task")) if isinstance(saved, dict) else (type(saved).__name__, None)
        raise ValueError(
            f"{path}: expected {AUX_FORMAT} for task {task_name!r}, got format {found[0]!r} for task {found[1]!r}"
        )
    aux = {}
    for name, spec in saved["archs"].items():
        module = build_aux(spec).to(device)
        module.load_state_dict(saved["state_dicts"][name])
        aux[name] = module
    return aux


def stage_aux(
    task: Task, params: Params, teacher_arch: dict, paths: TaskPaths, device: torch.device
) -> dict[str, nn.Module]:
    """The auxiliary networks of the task's objective for a stage that continues training the teacher.

    Those saved beside the teacher come back as they were trained (``train@``) or imported (a reverse generator).
    Missing discriminators -- an imported teacher has none -- are built fresh here and train along; they are part
    of the stage's resume state. Without a reverse generator the CycleGAN objective drops its cycle term, and
    with it the B-side discriminator.
    """
    saved = load_aux(paths.teacher_aux, task.name, device) if paths.teacher_aux.is_file() else {}
    wanted = aux_archs(task, teacher_arch, params)
    if "G_B" not in saved:
        wanted = {k: v for k, v in wanted.items() if k not in ("G_B", "D_B")}
    fresh = [name for name in wanted if name not in saved]
    if fresh:
        log.info(
            "%s: no trained %s beside the teacher; starting them fresh, trained along", task.name, ", ".join(fresh)
        )
    return {**saved, **{name: build_aux(wanted[name]).to(device) for name in fresh}}
