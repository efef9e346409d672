"""Log what a pipeline or sweep left on disk to MLflow: one child run per model, students registered.

The evaluate and profile steps write ``metrics.json``, ``latency.json``, ``grid.png`` and ``model.onnx`` per
model; this module turns one such report directory into one child run (DESIGN.md's metric names, the resolved
params, the files as artifacts) and, for students, a registered model version. It reads the files through
:mod:`alap.report.tables` (so a malformed file fails the same way as in the report) and talks to MLflow only
through :mod:`alap.tracking`. Logging happens after the outputs exist, so a tracking failure never costs one.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from alap.config import Params
from alap.models import load_checkpoint
from alap.paths import TaskPaths
from alap.pipeline import model_checkpoint
from alap.report.tables import CONDENSED, GRID_FILE, LATENCY_FILE, METRIC_NAMES, METRICS_FILE, TEACHER, load_task
from alap.task import Task
from alap.tracking import Tracker, flatten, git_commit, pipeline_key, provenance_tags, registered_model_name

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
SUMMARY_FILE = "summary.csv"
PIPELINE_RUN = "pipeline"


def experiment_name(task: str) -> str:
    """One MLflow experiment per task, so the registry's ``alap-<task>`` and its runs sit side by side."""
    return f"alap-{task}"


@dataclass(frozen=True)
class ModelOutputs:
    """Where one model's outputs are: its report directory (metrics, latency, grid, ONNX) and its checkpoint."""

    task: str
    model: str
    report_dir: Path
    checkpoint: Path

    @property
    def is_student(self) -> bool:
        return self.model not in (TEACHER, CONDENSED)


def report_metrics(outputs: ModelOutputs) -> dict[str, Any]:
    """DESIGN.md metrics of one model (quality and size from metrics.json, ``latency.*`` from latency.json)
    plus the weights provenance the quality metrics were measured with (empty when not recorded)."""
    reports_root = outputs.report_dir.parent.parent  # report_dir is <reports>/<task>/<model>, as load_task reads
    report = next((r for r in load_task(reports_root, outputs.task) if r.directory == outputs.report_dir), None)
    if report is None:
        raise FileNotFoundError(
            f"{outputs.report_dir}: no {METRICS_FILE} or {LATENCY_FILE} for {outputs.task}/{outputs.model}"
        )
    metrics = report.metrics or {}
    values = {name: float(metrics[name]) for name in METRIC_NAMES if metrics.get(name) is not None}
    values.update(report.latencies)
    weights = (metrics.get("measured_on") or {}).get("weights") or {}
    return {"metrics": values, "weights": weights}


def report_artifacts(report_dir: Path) -> list[Path]:
    """The files a model's run carries: the image grid, the metric files and the ONNX export, where present."""
    names = (GRID_FILE, METRICS_FILE, LATENCY_FILE, ONNX_FILE)
    return [report_dir / name for name in names if (report_dir / name).is_file()]


def input_example(params: Params, task_name: str) -> np.ndarray:
    """One real validation input (batch 1, NCHW float32): what a registered model's signature is traced on."""
    sample = Task.from_params(params, task_name).dataset("val")[0]["A"]
    return sample.unsqueeze(0).to(torch.float32).numpy()


def log_model(
    tracker: Tracker,
    parent_id: str,
    run_name: str,
    outputs: ModelOutputs,
    params: Mapping[str, Any],
    example: np.ndarray | None = None,
    extra_artifacts: Sequence[Path] = (),
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Log one model as the child run ``run_name``; register it as ``alap-<task>`` when it is a student.

    ``example`` is required for students (the registered model's input signature). Returns the run id and,
    for students, the registered version.
    """
    found = report_metrics(outputs)
    run_tags = {"alap.task": outputs.task, "alap.model": outputs.model, **(tags or {})}
    run_tags.update(flatten(found["weights"], "alap.weights"))
    artifacts = [*report_artifacts(outputs.report_dir), *extra_artifacts]
    run_id = tracker.log_point(parent_id, run_name, params, found["metrics"], artifacts, run_tags)
    logged: dict[str, Any] = {"run_id": run_id, "name": run_name, "metrics": found["metrics"]}
    if outputs.is_student:
        if example is None:
            raise ValueError(f"{outputs.task}/{outputs.model}: a student needs an input example to be registered")
        model, _ = load_checkpoint(outputs.checkpoint, map_location="cpu", expect_task=outputs.task)
        logged["version"] = tracker.log_generator_model(
            run_id, model, example, registered_model_name(outputs.task),
            tags={"alap.task": outputs.task, "alap.model": outputs.model, "alap.run_name": run_name},
        )
    return logged


def summary_rows(reports_dir: Path) -> list[dict[str, str]]:
    """Rows of ``reports/summary.csv`` (written by the report stage), as strings, in file order."""
    path = Path(reports_dir) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no summary table; run the report stage first (`dvc repro report`)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"task", "model"} - set(rows[0] if rows else {"task", "model"})
    if missing:
        raise ValueError(f"{path}: expected columns 'task' and 'model', missing {sorted(missing)}")
    return rows


def _stage_of(model: str, task: str, sparsity: str) -> str:
    """The DVC stage that produced a model (its dvc.lock entry holds the input hashes tagged on the run)."""
    if model == TEACHER:
        return f"train@{task}"
    if model == CONDENSED:
        return f"condense@{task}"
    return f"distill@{task}-{float(sparsity):g}"


def log_pipeline_outputs(
    params: Params, project_dir: Path, params_file: Path, tracker: Tracker | None = None
) -> dict[str, dict[str, Any]]:
    """Log every row of ``reports/summary.csv`` of a DVC pipeline run: per task a parent run ``pipeline``
    (found again by params and git commit), a child per model, students registered.

    Returns per task ``{"parent_id": ..., "children": [log_model results]}``.
    """
    project_dir = Path(project_dir)
    tracker = tracker or Tracker.connect(project_dir)
    dump = params.model_dump(mode="json")
    key = pipeline_key(dump, git_commit(project_dir))
    logged: dict[str, dict[str, Any]] = {}
    for row in summary_rows(project_dir / "reports"):
        task, model = row["task"], row["model"]
        if task not in logged:
            parent = tracker.parent_run(
                experiment_name(task), PIPELINE_RUN, key,
                tags={"alap.task": task, "alap.profile": params.profile_name, **provenance_tags(project_dir)},
            )
            logged[task] = {"parent_id": parent, "children": [], "example": input_example(params, task)}
        paths = TaskPaths(task, models=project_dir / "models", reports=project_dir / "reports")
        outputs = ModelOutputs(task, model, paths.report_dir / model, model_checkpoint(task, model, None, paths))
        sparsity = row.get("sparsity") or ""
        point = {"model": model, "sparsity": sparsity or None}
        tags = provenance_tags(project_dir, stage=_stage_of(model, task, sparsity))
        logged[task]["children"].append(
            log_model(tracker, logged[task]["parent_id"], model, outputs, {**dump, "point": point},
                      logged[task]["example"], [params_file], tags)
        )
    for entry in logged.values():
        entry.pop("example")
        tracker.finish_run(entry["parent_id"])
    return logged
