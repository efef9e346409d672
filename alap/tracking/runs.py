"""What a pipeline, a sweep and a benchmark log to MLflow: one parent run per task and configuration, and one child
run per model, every child logged the same way.

A child run (:func:`log_child`) holds the model's params and metrics, the files of its report folder as artifacts,
and tags. The three callers differ only in their parent and in where a model's numbers come from:

* pipeline: experiment ``alap-<task>``, parent ``pipeline``, a child per row of reports/summary.csv with the metrics
  of its metrics.json and latency.json and its dvc.lock input hashes; students registered as ``alap-<task>``;
* sweep: experiment ``alap-<task>``, parent named after the sweep, the teacher and a child per point with the
  point's params snapshot, prune and distill reports, and when and where it ran; students registered;
* benchmark: experiment ``alap-bench``, parent ``bench-<task>``, a child per row of a task's results with the
  row's numbers as metrics.

Report files are read through :mod:`alap.report.tables` (a malformed file fails as it does in the report), and
MLflow is reached only through :mod:`alap.tracking.client`. Logging happens after the outputs exist, so a
tracking failure never costs one.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from alap.bench.params import BenchParams
from alap.compress.params import PruneParams
from alap.config import Params, PromoteParams
from alap.metrics.names import METRICS, LatencyKey
from alap.models import load_checkpoint
from alap.paths import TaskPaths
from alap.points import PRUNE_REPORT, recorded_sparsity
from alap.report.build import plot_paths
from alap.report.tables import CONDENSED, GRID_FILE, LATENCY_FILE, METRICS_FILE, TEACHER, load_task
from alap.task import Task
from alap.timing import time_window
from alap.tracking.client import Tracker, registered_model_name
from alap.tracking.keys import flatten
from alap.tracking.provenance import git_commit, pipeline_key, provenance_tags

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
SUMMARY_FILE = "summary.csv"
PIPELINE_RUN = "pipeline"
BENCH_EXPERIMENT = "alap-bench"
REPORT_FILES = (GRID_FILE, METRICS_FILE, LATENCY_FILE, ONNX_FILE)
BENCH_FILES = (METRICS_FILE, LATENCY_FILE, GRID_FILE)  # a benchmark row's ONNX exports stay on disk
_BENCH_SETTINGS = ("method", "budget", "source", "tune", "teacher", "features", "steps", "target_gmacs")


def experiment_name(task: str) -> str:
    """One MLflow experiment per task, so the registry's ``alap-<task>`` and its runs sit side by side."""
    return f"alap-{task}"


@dataclass(frozen=True)
class ModelOutputs:
    """Where one model's outputs are: its report directory (metrics, latency, grid, ONNX), its checkpoint, the
    reports of the stages that made it (their times become the run's), a student's sparsity and, for a student
    planned for a latency budget, the p50 its plan predicted and the one its prune re-measured (``plan``)."""

    task: str
    model: str
    report_dir: Path
    checkpoint: Path
    stage_reports: tuple[Path, ...] = ()
    sparsity: float | None = None
    plan: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: TaskPaths, model: str) -> ModelOutputs:
        """The outputs of ``model`` (teacher, condensed or a student's point name) in a task's layout."""
        stage_reports = {
            TEACHER: (paths.train_metrics, paths.teacher_source),
            CONDENSED: (paths.condense_report,),
        }.get(model, (paths.model_dir / model / "prune_report.json", paths.model_dir / model / "distill_report.json"))
        sparsity, plan = (None, {}) if model in (TEACHER, CONDENSED) else _prune_record(paths.model_dir / model)
        return cls(
            paths.task,
            model,
            paths.report_dir / model,
            paths.checkpoint(model),
            stage_reports,
            sparsity,
            plan,
        )

    @property
    def is_student(self) -> bool:
        return self.model not in (TEACHER, CONDENSED)

    def window(self) -> tuple[float, float] | None:
        """When the stages that made the model ran (Unix seconds), from their reports; None when unrecorded."""
        return time_window(json.loads(path.read_text()) for path in self.stage_reports if path.is_file())


def _prune_record(point_dir: Path) -> tuple[float, dict[str, float]]:
    """A student's sparsity as its prune stage recorded it and, for a latency budget's student, the p50 its plan
    predicted and the one measured of the pruned student itself (``latency_plan.*`` metrics)."""
    sparsity = recorded_sparsity(point_dir)
    plan = json.loads((point_dir / PRUNE_REPORT).read_text()).get("latency") or {}
    keys = {"planned_p50_ms": "p50_ms_planned", "student_p50_ms": "p50_ms_student"}
    return sparsity, {f"latency_plan.{name}": float(plan[key]) for name, key in keys.items() if key in plan}


def prune_settings(params: Params, model: str) -> PruneParams:
    """The prune settings a student was made with: a latency point of the sweep plans for its own budget
    (prune.target 'latency', prune.latency its device, backend, batch size and p50), a sparsity point with the
    ``prune`` section."""
    if model in params.sweep.latency.points:
        return params.at_latency_point(model).prune
    return params.prune


def branch_params(params: Params, outputs: ModelOutputs) -> dict[str, Any]:
    """The resolved params one model was made and measured with: its task's entry, the sections its stages read
    (the task's own train overrides applied), and for a student its ``sparsity`` as a number (a latency point's:
    the one it reached; its budget is prune.target 'latency' and prune.latency.*).

    Pipeline and sweep runs log exactly this, so runs of one task compare and filter on the same keys; another
    task's settings are not a model's params."""
    task = params.tasks[outputs.task]
    branch: dict[str, Any] = {
        "task": outputs.task,
        "seed": params.seed,
        "tasks": {outputs.task: task.model_dump(mode="json", exclude_none=True)},
        "data": {"load_size": params.load_size(outputs.task), "crop_size": params.crop_size(outputs.task)},
    }
    if task.source == "synthetic":
        branch["data"].update(params.data.model_dump(mode="json"))
    if task.arch is not None:
        branch["model"] = {
            task.arch: getattr(params.model, task.arch).model_dump(mode="json"),
            "discriminator": params.discriminator_for(outputs.task).model_dump(mode="json"),
        }
        branch["train"] = params.train_for(outputs.task).model_dump(mode="json")
    if outputs.model != TEACHER:
        branch["condense"] = params.condense_for(outputs.task).model_dump(mode="json")
    if outputs.is_student:
        branch["prune"] = prune_settings(params, outputs.model).model_dump(mode="json")
        branch["distill"] = params.distill.model_dump(mode="json")
        branch["sparsity"] = outputs.sparsity
    branch["evaluate"] = params.evaluate.model_dump(mode="json")
    branch["profile"] = params.profile.model_dump(mode="json")
    return branch


def version_description(outputs: ModelOutputs, metrics: Mapping[str, float], gates: PromoteParams) -> str:
    """One line for a registered version: what it is and the numbers promotion looks at first."""

    def shown(key: str, form: str, unit: str = "") -> str:
        return f"{format(metrics[key], form)}{unit}" if key in metrics else "not measured"

    p50 = LatencyKey(gates.device, gates.backend).p50
    fid = METRICS["fid"].shown(metrics) or "not measured"
    return (
        f"{outputs.task} {outputs.model}: sparsity {outputs.sparsity:g}, GMACs {shown('gmacs', '.3g')}, "
        f"FID {fid}, LPIPS to teacher {shown('lpips_teacher', '.3f')}, "
        f"p50 on {gates.device}/{gates.backend} {shown(p50, '.2f', ' ms')}"
    )


class SweepPointRun(NamedTuple):
    """One finished sweep point: its run name, params, its run's layout and folder, params snapshot and the flow's
    result for it (``started``, ``ended``, ``worker``)."""

    name: str
    params: Params
    paths: TaskPaths
    point_dir: Path
    snapshot: Path
    result: dict[str, Any]


def log_child(
    tracker: Tracker,
    parent_id: str,
    name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    report_dir: Path,
    files: Sequence[str] = REPORT_FILES,
    extra_artifacts: Sequence[Path] = (),
    tags: Mapping[str, str] | None = None,
    window: tuple[float, float] | None = None,
) -> str:
    """Log one model as the child run ``name``: its params and metrics, those of ``files`` its report folder holds
    plus ``extra_artifacts`` as artifacts, and ``tags``; ``window`` is when its work ran. Returns the run id."""
    artifacts = [report_dir / file for file in files if (report_dir / file).is_file()]
    return tracker.log_point(parent_id, name, params, metrics, [*artifacts, *extra_artifacts], tags, window)


def report_metrics(outputs: ModelOutputs) -> dict[str, Any]:
    """docs/architecture.md metrics of one model (quality and size from metrics.json, ``latency.*`` from latency.json)
    plus the weights provenance the quality metrics were measured with (empty when not recorded)."""
    reports_root = outputs.report_dir.parent.parent  # report_dir is <reports>/<task>/<model>, as load_task reads
    report = next((r for r in load_task(reports_root, outputs.task) if r.directory == outputs.report_dir), None)
    if report is None:
        raise FileNotFoundError(
            f"{outputs.report_dir}: no {METRICS_FILE} or {LATENCY_FILE} for {outputs.task}/{outputs.model}"
        )
    metrics = report.metrics or {}
    values = {name: float(metrics[name]) for name in METRICS if metrics.get(name) is not None}
    values.update(report.latencies)
    weights = (metrics.get("measured_on") or {}).get("weights") or {}
    return {"metrics": values, "weights": weights}


def input_example(params: Params, task_name: str) -> np.ndarray:
    """One real validation input (batch 1, NCHW float32): what a registered model's signature is traced on."""
    sample = Task.from_params(params, task_name).dataset("val")[0]["A"]
    return sample.unsqueeze(0).to(torch.float32).numpy()


def log_model(
    tracker: Tracker,
    parent_id: str,
    run_name: str,
    outputs: ModelOutputs,
    params: Params,
    example: np.ndarray | None = None,
    extra_artifacts: Sequence[Path] = (),
    tags: Mapping[str, str] | None = None,
    window: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Log a pipeline's or sweep's model as the child run ``run_name`` with its :func:`branch_params`, starting and
    ending when its stages did (``window``, default: from its stage reports); register it as ``alap-<task>`` when
    it is a student.

    ``example`` is required for students (the registered model's input signature). Returns the run id and,
    for students, the registered version.
    """
    found = report_metrics(outputs)
    found["metrics"].update(outputs.plan)
    run_tags = {"alap.task": outputs.task, "alap.model": outputs.model, **(tags or {})}
    run_tags.update(flatten(found["weights"], "alap.weights"))
    run_id = log_child(
        tracker,
        parent_id,
        run_name,
        branch_params(params, outputs),
        found["metrics"],
        outputs.report_dir,
        extra_artifacts=extra_artifacts,
        tags=run_tags,
        window=window or outputs.window(),
    )
    logged: dict[str, Any] = {"run_id": run_id, "name": run_name, "model": outputs.model, "metrics": found["metrics"]}
    if outputs.is_student:
        if example is None:
            raise ValueError(f"{outputs.task}/{outputs.model}: a student needs an input example to be registered")
        model, _ = load_checkpoint(outputs.checkpoint, map_location="cpu", expect_task=outputs.task)
        logged["version"] = tracker.log_generator_model(
            run_id,
            model,
            example,
            registered_model_name(outputs.task),
            tags={"alap.task": outputs.task, "alap.model": outputs.model, "alap.run_name": run_name},
            description=version_description(outputs, found["metrics"], params.promote),
        )
    return logged


def log_task_summary(
    tracker: Tracker,
    parent_id: str,
    children: Sequence[Mapping[str, Any]],
    champion_version: int | None,
    artifacts: Sequence[Path] = (),
) -> str | None:
    """Give a task's parent run what a reader looks for first: the report files (``artifacts``) and the metrics
    of its best student, the champion when promotion chose one of these children, else the lowest FID.

    Returns the best student's run name (None without students)."""
    students = [child for child in children if "version" in child]
    champion = [child for child in students if child["version"] == champion_version]
    best = champion[0] if champion else min(students, key=lambda c: c["metrics"].get("fid", np.inf), default=None)
    tags = {}
    if best is not None:
        tags = {"alap.best_student": best["name"], "alap.best_by": "champion" if champion else "lowest fid"}
    tracker.log_to_run(parent_id, best["metrics"] if best else {}, [path for path in artifacts if path.exists()], tags)
    return None if best is None else best["name"]


# ----- pipeline -------------------------------------------------------------------------------------------------


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


def _stages_of(params: Params, task: str, model: str, sparsity: float | None) -> list[str]:
    """The DVC stages that produced a model (their dvc.lock entries hold the input hashes tagged on the run)."""
    if model == TEACHER:
        return [f"{'import' if params.tasks[task].teacher is not None else 'train'}@{task}"]
    if model == CONDENSED:
        return [f"condense@{task}"]
    if model in params.sweep.latency.points:
        return [f"prune-latency@{task}-{model}", f"distill-latency@{task}-{model}"]
    return [f"prune@{task}-{sparsity:g}", f"distill@{task}-{sparsity:g}"]


def task_report_files(reports_dir: Path, task: str) -> list[Path]:
    """A task's report files for its parent run: the HTML page, the summary, its Pareto plots, the condense plot."""
    plots = [path for path in plot_paths(reports_dir, task).values() if path.suffix == ".png"]
    return [
        reports_dir / "index.html",
        reports_dir / "summary.md",
        *plots,
        TaskPaths(task, reports=reports_dir).report_dir / "condense" / "scale_factors.png",
    ]


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
    windows: dict[str, list[tuple[float, float]]] = {}
    for row in summary_rows(project_dir / "reports"):
        task, model = row["task"], row["model"]
        paths = TaskPaths(task, models=project_dir / "models", reports=project_dir / "reports")
        outputs = ModelOutputs.of(paths, model)
        window = outputs.window()
        if task not in logged:
            parent = tracker.parent_run(
                experiment_name(task),
                PIPELINE_RUN,
                key,
                tags={"alap.task": task, "alap.profile": params.profile_name, **provenance_tags(project_dir)},
                start_time=None if window is None else window[0],
            )
            logged[task] = {"parent_id": parent, "children": [], "example": input_example(params, task)}
            windows[task] = []
        tags: dict[str, str] = {}
        for stage in _stages_of(params, task, model, outputs.sparsity):
            tags.update(provenance_tags(project_dir, stage=stage))
        logged[task]["children"].append(
            log_model(
                tracker,
                logged[task]["parent_id"],
                model,
                outputs,
                params,
                logged[task]["example"],
                [params_file],
                tags,
                window,
            )
        )
        if window is not None:
            windows[task].append(window)
    for task, entry in logged.items():
        entry.pop("example")
        span = (min(w[0] for w in windows[task]), max(w[1] for w in windows[task])) if windows[task] else None
        tracker.finish_run(entry["parent_id"], window=span)
    return logged


# ----- sweep ----------------------------------------------------------------------------------------------------


def log_sweep_task(
    tracker: Tracker,
    sweep_name: str,
    grid_id: Mapping[str, Any],
    task: str,
    params: Params,
    paths: TaskPaths,
    points: Sequence[SweepPointRun],
    project_dir: Path,
) -> str:
    """Log one task of a sweep: a parent named after the sweep (found again by the grid, the task's params and the
    git commit), the teacher and every point as children, students registered.

    Each point's ``result`` gets its ``run_id`` and registered ``version``. Returns the parent run id.
    """
    dump = params.model_dump(mode="json")
    key = pipeline_key({"sweep": sweep_name, "grid": grid_id, "params": dump}, git_commit(project_dir))
    parent = tracker.parent_run(
        experiment_name(task),
        sweep_name,
        key,
        tags={"alap.task": task, "alap.sweep": sweep_name, **provenance_tags(project_dir)},
    )
    log_model(tracker, parent, TEACHER, ModelOutputs.of(paths, TEACHER), params)
    example = input_example(params, task)
    for point in points:
        result = point.result
        outputs = ModelOutputs.of(point.paths, point.point_dir.name)
        extra = [point.snapshot, point.point_dir / "prune_report.json", point.point_dir / "distill_report.json"]
        where = {"alap.point.worker": result["worker"], "alap.point.dir": str(point.point_dir)}
        window = (result["started"], result["ended"])
        logged = log_model(tracker, parent, point.name, outputs, point.params, example, extra, where, window)
        result.update(run_id=logged["run_id"], version=logged.get("version"))
    tracker.finish_run(parent)
    return parent


# ----- benchmark ------------------------------------------------------------------------------------------------


def bench_row_metrics(row: dict[str, Any]) -> dict[str, float]:
    """Every top-level number of a benchmark row (quality, cost, latency, deviation, wall ratio) plus the total
    wall time."""
    numbers = {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _BENCH_SETTINGS
    }
    wall = row.get("wall_s", {}).get("total")
    if wall is not None:
        numbers["wall_s"] = float(wall)
    return numbers


def log_bench_task(
    results: dict[str, Any],
    params: Params,
    bench: BenchParams,
    out_dir: Path,
    project_dir: Path = Path("."),
    tracker: Tracker | None = None,
) -> str:
    """Log one task's benchmark ``results`` (as written by :func:`alap.bench.run.run_task`): a parent
    ``bench-<task>`` found again by the settings and git commit, a child per row (``teacher``, ``condensed``,
    ``<method>-b<budget>``) with the method's settings as params. Returns the parent run id."""
    task = results["task"]
    tracker = tracker or Tracker.connect(project_dir)
    config = {"params": params.model_dump(mode="json"), "bench": bench.model_dump(mode="json"), "task": task}
    parent = tracker.parent_run(
        BENCH_EXPERIMENT,
        f"bench-{task}",
        pipeline_key(config, git_commit(project_dir)),
        tags={"alap.task": task, "alap.profile": params.profile_name},
    )
    for row in [*results["references"], *results["rows"]]:
        settings = {k: row.get(k) for k in _BENCH_SETTINGS if k in row}
        if "student" in row:
            settings["knob"] = row["student"].get("knob")
        log_child(
            tracker,
            parent,
            row["model"],
            {"task": task, **settings},
            bench_row_metrics(row),
            out_dir / row["dir"],
            BENCH_FILES,
        )
    tracker.finish_run(parent)
    log.info(
        "%s: %d benchmark rows logged to MLflow experiment %s",
        task,
        len(results["references"]) + len(results["rows"]),
        BENCH_EXPERIMENT,
    )
    return parent
