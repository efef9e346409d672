"""The ``condense@<task>`` step: the teacher trained on with the sparsity penalty into ``condensed.pt``."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import torch

from alap import io
from alap.compress.condense import condense
from alap.config import Params
from alap.data.batches import endless_batches
from alap.device import resolve_device
from alap.dist import current_world
from alap.gan_aux import stage_aux
from alap.loop import params_key
from alap.metrics.fid import InceptionFeatures
from alap.models import arch_of, save_checkpoint
from alap.objectives import make_objective
from alap.paths import DEFAULT_TORCH_HOME, TaskPaths
from alap.selection import val_fid_validator
from alap.task import Task
from alap.timing import stage_times

log = logging.getLogger(__name__)


def condense_task(
    params: Params, task_name: str, paths: TaskPaths | None = None, torch_home: Path = DEFAULT_TORCH_HOME
) -> dict | None:
    """Condense the trained teacher of ``task_name`` into ``condensed.pt`` (+ scale-factor table and plot). In a
    multi-process run (alap/dist.py) rank 0 alone writes and returns; the others return None. An unpaired task
    keeps its best validation FID (alap/selection.py), which needs the FID Inception weights in ``torch_home``."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    teacher, teacher_meta = task.load_generator(paths.teacher, device)
    aux = stage_aux(task, params, arch_of(teacher), paths, device)
    if task.objective_kind == "teacher":
        aux["T"] = teacher  # no targets: condensing follows the imported teacher's own outputs
    batches = endless_batches(task.dataset("train"), task.train.batch_size, params.seed + 1, device)
    validator = None
    if task.objective_kind == "cycle":
        inception = InceptionFeatures(torch_home, device)
        validator = partial(val_fid_validator, task, inception=inception, device=device)
    selection = [] if validator is None else ["keep the best validation FID"]  # the state then holds it too
    key = params_key(paths.teacher, task.condense, task.train, *selection)
    result = condense(
        teacher,
        arch_of(teacher),
        lambda g: make_objective(task.objective_kind, g, aux, task.train),
        batches,
        task.condense,
        task.condense.report_threshold,
        task.example_inputs(device),
        state_path=paths.resume_state("condense", key),
        table_path=paths.report_dir / "condense" / "scale_factors.csv",
        plot_path=paths.report_dir / "condense" / "scale_factors.png",
        validator=validator,
    )
    if not current_world().is_main:
        return None
    below = sum(row["below_threshold"] for row in result.table)
    total = sum(row["width"] for row in result.table)
    meta = {
        "task": task_name,
        "role": "condensed",
        "steps": task.condense.steps,
        "channels_below_threshold": below,
        "channels": total,
    }
    # The wall time goes to the report only: in the checkpoint it would change the bytes of identical weights
    # on every rerun, and DVC would rerun every prune stage downstream.
    save_checkpoint(paths.condensed, result.model, result.arch, meta)
    selected = {} if result.selected is None else {"selected": result.selected}
    report = {**meta, **selected, **stage_times(result.wall_s)}
    io.write_json(paths.condense_report, report)
    log.info(
        "condensed %s in %.0f s: %d of %d channels below threshold %g",
        task_name,
        result.wall_s,
        below,
        total,
        task.condense.report_threshold,
    )
    return report
