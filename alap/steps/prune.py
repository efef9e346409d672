"""The ``prune@<task>-<s>`` step: the condensed network's channels removed physically at one sparsity."""

from __future__ import annotations

import time
from pathlib import Path

from alap import io
from alap.compress.prune import prune
from alap.config import Params
from alap.device import resolve_device
from alap.models import arch_of, save_checkpoint
from alap.paths import TaskPaths
from alap.task import Task
from alap.timing import stage_times


def prune_point(params: Params, task_name: str, sparsity: float, out_dir: Path, paths: TaskPaths | None = None) -> dict:
    """Prune the condensed network of ``task_name`` at ``sparsity`` into ``out_dir/pruned.pt`` (+ report JSON).

    ``paths`` locates the condensed network (default: the DVC layout); a sweep passes its own per-run layout.
    """
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    settings = params.prune.model_copy(update={"sparsity": sparsity})
    condensed, _ = task.load_generator(paths.condensed, device)
    started = time.perf_counter()
    result = prune(condensed, arch_of(condensed), settings, task.example_inputs(device))
    report = {**result.report, "sparsity": sparsity, **stage_times(time.perf_counter() - started)}
    save_checkpoint(
        out_dir / "pruned.pt",
        result.student,
        result.arch,
        {"task": task_name, "role": "pruned", "sparsity": sparsity, "prune": settings.model_dump()},
    )
    io.write_json(out_dir / "prune_report.json", report)
    return report
