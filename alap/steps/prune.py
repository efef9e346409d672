"""The ``prune@<task>-<s>`` step: the condensed network's channels removed physically at one sparsity, or (target
``latency``) as many as a p50 budget on a device needs; then the student itself is timed again."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from alap import io
from alap.compress.prune import prune
from alap.config import Params
from alap.device import resolve_device
from alap.models import arch_of, save_checkpoint
from alap.paths import LATENCY_CACHE, TaskPaths
from alap.profile.candidates import CandidateTimer
from alap.task import Task
from alap.timing import stage_times

log = logging.getLogger(__name__)


def prune_point(
    params: Params,
    task_name: str,
    sparsity: float | None,
    out_dir: Path,
    paths: TaskPaths | None = None,
    latency_cache: Path = LATENCY_CACHE,
) -> dict:
    """Prune the condensed network of ``task_name`` at ``sparsity`` (None for target 'latency', whose budget is
    ``params.prune.latency``: the report and checkpoint then record the sparsity it reached, the fraction of MACs
    removed) into ``out_dir/pruned.pt`` (+ report JSON).

    ``paths`` locates the condensed network (default: the DVC layout); a sweep passes its own per-run layout.
    ``latency_cache`` holds the latency planner's candidate timings (alap.profile.candidates).
    """
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    device = resolve_device(params.device)
    settings = params.prune if sparsity is None else params.prune.model_copy(update={"sparsity": sparsity})
    condensed, _ = task.load_generator(paths.condensed, device)
    example = task.example_inputs(device)
    timer = None
    if settings.target == "latency":
        timer = CandidateTimer(settings.latency, tuple(example.shape[1:]), cache_dir=latency_cache)
    started = time.perf_counter()
    result = prune(condensed, arch_of(condensed), settings, example, timer=timer)
    if timer is not None:  # a budget's point: its sparsity is the fraction of MACs it removed
        sparsity = result.report["macs_removed_fraction"]
    report = {**result.report, "sparsity": sparsity, **stage_times(time.perf_counter() - started)}
    if timer is not None:
        report["latency"] = remeasured(report["latency"], timer, result.student)
    save_checkpoint(
        out_dir / "pruned.pt",
        result.student,
        result.arch,
        {"task": task_name, "role": "pruned", "sparsity": sparsity, "prune": settings.model_dump()},
    )
    io.write_json(out_dir / "prune_report.json", report)
    return report


def remeasured(plan: dict, timer: CandidateTimer, student: torch.nn.Module) -> dict:
    """The planner's record with the student itself timed afresh (its own weights, not a cached candidate), in the
    budget's backend (for ``onnxruntime-int8`` its int8 quantization, as the timer makes every candidate's):
    ``p50_ms_student`` and whether it is within the budget (``student_within_budget``)."""
    fresh = timer.measure(copy.deepcopy(student))
    within = fresh["p50_ms"] <= plan["p50_ms_target"]
    if not within:
        log.warning(
            "the pruned student re-measured at %.3f ms p50, over the %.3f ms budget (planned %.3f ms): the machine "
            "was busier than while planning, or the budget sits within the timing noise",
            fresh["p50_ms"],
            plan["p50_ms_target"],
            plan["p50_ms_planned"],
        )
    return {
        **plan,
        "p50_ms_student": fresh["p50_ms"],
        "p90_ms_student": fresh["p90_ms"],
        "student_within_budget": within,
        "cache_file": str(timer.cache_file),
        "cache_hits": timer.hits,
    }
