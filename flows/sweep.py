"""The ``alap-sweep`` flow: one teacher per task, one condensed network per (task, sparsity weight), and the
sweep points (sparsities, and latency budgets like ``cpu-t2-33ms``) fanned out over a task runner (threads by
default, Dask for a cluster).

Every point works in its own directory, ``<out_root>/<task>/w<weight>/models/<task>/<point>/`` (reports
beside it under ``.../reports/``), by calling alap's step functions directly: parallel points never share a
file, and no DVC workspace lock is involved. Latency is measured after the fan-out, one model at a time, so
no point is timed while others compete for the same cores. MLflow gets one parent run per task (experiment
``alap-<task>``), a ``teacher`` child (promotion's fid reference) and one child per point with the point's
resolved params (also as a ``params.yaml`` snapshot that reproduces it with ``dvc repro``); students are
registered as ``alap-<task>``.

    python -m flows.sweep --sparsities 0.5 0.75 --weights 1e-3 3e-3 --dask-workers 2
    python -m flows.sweep --sparsities 0.75 --latency-points cpu-t2-0.7ms   # (backend, batch: sweep.latency)
    python -m flows.sweep --dask-address tcp://scheduler:8786 --point-resources GPU=1

On a real cluster (``--dask-address``), ``--point-resources`` annotates each point's task with Dask resources, so
that the scheduler runs points only on workers started with them (``dask worker ... --resources GPU=1``); the
sweep refuses to start when no worker of the scheduler has them, instead of waiting for one forever.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import ValidationError

import flows.tasks as flows_tasks
from alap import io
from alap.config import Params, ParamsError, load_params
from alap.metrics.names import LatencyKey
from alap.paths import DEFAULT_TORCH_HOME, TaskPaths, point_name
from alap.report.tables import TEACHER
from alap.tracking.client import Tracker
from alap.tracking.runs import ModelOutputs, SweepPointRun, log_sweep_task, report_metrics
from flows.tasks import (
    compress_point_task,
    condense_run_task,
    evaluate_task,
    prepare_data_task,
    profile_task,
    train_teacher_task,
)

PARAMS_SNAPSHOT = "params.yaml"


def layout(root: Path, task_name: str) -> TaskPaths:
    """A self-contained models/reports/state tree under ``root`` for one task."""
    return TaskPaths(task_name, models=root / "models", reports=root / "reports", state=root / "state")


@dataclass(frozen=True)
class SweepPoint:
    """One (task, sparsity weight, sparsity or latency budget) point: the params that reproduce it and where it
    writes. A latency point (``latency``, one of its params' sweep.latency.points) has no sparsity until pruned."""

    task: str
    weight: float
    sparsity: float | None
    params: Params
    paths: TaskPaths
    latency: str | None = None

    @property
    def point(self) -> str:
        """The point's own name, its folder: ``s0.5`` or ``cpu-t2-33ms``."""
        return self.latency or point_name(self.sparsity)

    @property
    def name(self) -> str:
        """Run and task name, unique within a task's sweep (``w0.001-s0.5``, ``w0.001-cpu-t2-33ms``)."""
        return f"w{self.weight:g}-{self.point}"

    @property
    def point_dir(self) -> Path:
        return self.paths.model_dir / self.point


@dataclass(frozen=True)
class SweepGrid:
    """The resolved grid under ``out_root``: per task the teacher's params and layout; per (task, weight) a condense
    run; points."""

    base: Params
    out_root: Path
    teachers: dict[str, tuple[Params, TaskPaths]]
    runs: dict[tuple[str, float], tuple[Params, TaskPaths]]
    points: list[SweepPoint]


def _resolved(base: Params, what: str, **updates: Any) -> Params:
    """``base`` with section keys replaced (``condense={"sparsity_weight": w}``), validated like params.yaml."""
    raw = base.model_dump(mode="json")
    raw["dvc"] = None  # a sweep point runs its steps directly, outside dvc.yaml's stage lists
    for section, value in updates.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ParamsError(f"sweep parameters for {what} are invalid: {problems}") from None


def resolve_grid(
    base: Params,
    out_root: Path,
    tasks: Sequence[str] | None = None,
    sparsities: Sequence[float] | None = None,
    sparsity_weights: Sequence[float] | None = None,
    devices: Sequence[str] | None = None,
    latency_points: Sequence[str] | None = None,
) -> SweepGrid:
    """Expand the sweep parameters (defaults: params.yaml's run_tasks, sweep.sparsities, sweep.latency.points,
    condense weight, profile devices) into validated per-point params; bad values raise ParamsError before any
    work starts."""
    tasks = list(tasks or base.run_tasks)
    sparsities = list(sparsities or base.sweep.sparsities)
    latency = base.sweep.latency.model_dump(mode="json")
    latency["points"] = list(latency_points or latency["points"])
    weights = list(sparsity_weights or [base.condense.sparsity_weight])
    if len(set(weights)) != len(weights):
        raise ParamsError(f"sparsity_weights must be distinct, got {weights}")
    profile = {"devices": list(devices)} if devices else {}
    teachers, runs, points = {}, {}, []
    for task_name in tasks:
        task_root = out_root / task_name
        teacher_params = _resolved(
            base,
            f"task {task_name}",
            run_tasks=[task_name],
            profile=profile,
            sweep={"sparsities": sparsities, "latency": latency},
        )
        teachers[task_name] = (teacher_params, layout(task_root / TEACHER, task_name))
        for weight in weights:
            run_params = _resolved(teacher_params, f"{task_name} w={weight:g}", condense={"sparsity_weight": weight})
            paths = layout(task_root / f"w{weight:g}", task_name)
            runs[(task_name, weight)] = (run_params, paths)
            for sparsity in sparsities:
                point_params = _resolved(
                    run_params,
                    f"{task_name} w={weight:g} s={sparsity:g}",
                    sweep={"sparsities": [sparsity], "latency": {**latency, "points": []}},
                )
                points.append(SweepPoint(task_name, weight, sparsity, point_params, paths))
            for budget in latency["points"]:
                point_params = _resolved(
                    run_params,
                    f"{task_name} w={weight:g} {budget}",
                    sweep={"sparsities": [], "latency": {**latency, "points": [budget]}},
                )
                points.append(SweepPoint(task_name, weight, None, point_params, paths, budget))
    return SweepGrid(base, out_root, teachers, runs, points)


def task_runner(
    dask_address: str | None = None,
    dask_workers: int | None = None,
    dask_processes: bool = True,
    max_threads: int | None = None,
) -> TaskRunner:
    """Threads by default; a Dask scheduler when an address is given; a local Dask cluster of ``dask_workers``
    single-threaded workers (processes unless ``dask_processes`` is false) when asked for."""
    if dask_address and dask_workers:
        raise ValueError("give either dask_address (an existing cluster) or dask_workers (a local one), not both")
    if dask_address or dask_workers:
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        if dask_workers < 1:
            raise ValueError(f"dask_workers must be >= 1, got {dask_workers}")
        # Each worker imports the tasks' modules (torch, prefect, alap: about 8 s here) as it starts, not at its
        # first task; otherwise the second of two points submitted together started only as the first ended.
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": dask_workers,
                "threads_per_worker": 1,
                "processes": dask_processes,
                "dashboard_address": None,
                "preload": [flows_tasks.__name__],
            },
        )
    return ThreadPoolTaskRunner(max_workers=max_threads)


def write_snapshot(params: Params, path: Path) -> Path:
    """The params a point ran with, as a params.yaml that ``dvc repro`` (or ``alap --params``) accepts."""
    io.write_text(path, yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    return path


@flow(name="alap-sweep-grid")
def sweep_grid(
    grid: SweepGrid,
    torch_home: str = str(DEFAULT_TORCH_HOME),
    name: str = "sweep",
    project_dir: str = ".",
    track: bool = True,
    point_resources: dict[str, float] | None = None,
) -> list[dict]:
    """The work of the grid :func:`sweep` resolved, on whatever task runner this flow was given; each point's
    task carries the Dask resource annotation ``point_resources`` (a Dask task runner only)."""
    logger = get_run_logger()
    teacher_done, teacher_evals = {}, {}
    for task_name, (params, paths) in grid.teachers.items():
        data = prepare_data_task.submit(params, task_name)
        teacher_done[task_name] = train_teacher_task.submit(params, task_name, paths, wait_for=[data])
    condensed = {
        key: condense_run_task.submit(params, key[0], grid.teachers[key[0]][1], paths, wait_for=[teacher_done[key[0]]])
        for key, (params, paths) in grid.runs.items()
    }
    for point in grid.points:
        write_snapshot(point.params, point.point_dir / PARAMS_SNAPSHOT)
    with _annotated(point_resources):
        futures = [
            compress_point_task.submit(
                p.params,
                p.task,
                p.sparsity,
                p.paths,
                torch_home,
                p.name,
                p.latency,
                wait_for=[condensed[(p.task, p.weight)]],
            )
            for p in grid.points
        ]
    # The teacher's evaluation waits for its task's points, so that they get the workers first.
    for task_name, (params, paths) in grid.teachers.items():
        teacher_evals[task_name] = evaluate_task.submit(
            params,
            task_name,
            TEACHER,
            paths,
            torch_home,
            wait_for=[f for f, p in zip(futures, grid.points) if p.task == task_name],
        )
    results = [f.result() for f in futures]
    for future in teacher_evals.values():
        future.result()
    logger.info("all %d points compressed and evaluated; profiling one model at a time", len(results))

    for task_name, (params, paths) in grid.teachers.items():
        profile_task(params, task_name, TEACHER, paths)
    for point, result in zip(grid.points, results):
        result["latency"] = profile_task(
            point.params, point.task, point.point_dir.name, point.paths, str(point.point_dir)
        )
    if track:
        _track(grid, results, name, Path(project_dir))
    _publish_points(grid, results, name)
    return results


def _publish_points(grid: SweepGrid, results: list[dict], name: str) -> None:
    """Each point's headline numbers in the flow run's log and as a table artifact ``<name>-points`` (the
    latency on the device promotion gates on), so the run page shows what the sweep found."""
    logger = get_run_logger()
    gate = LatencyKey(grid.base.promote.device, grid.base.promote.backend)
    rows = []
    for point, result in zip(grid.points, results):
        measured = report_metrics(ModelOutputs.of(point.paths, point.point_dir.name))["metrics"]
        row = {
            "task": point.task,
            "point": point.name,
            "sparsity_weight": point.weight,
            "sparsity": result["sparsity"],
            "gmacs": measured.get("gmacs"),
            "fid": measured.get("fid"),
            "lpips_teacher": measured.get("lpips_teacher"),
            f"p50_ms {gate.device}/{gate.backend}": measured.get(gate.p50),
            "registered_version": result.get("version"),
        }
        logger.info(
            "%s",
            ", ".join(
                f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
            ),
        )
        rows.append(row)
    create_table_artifact(
        rows, key=f"{name}-points".lower().replace("_", "-"), description=f"the points of sweep {name}"
    )


def _annotated(resources: dict[str, float] | None):
    """Dask's annotation context for tasks submitted inside it (the Dask task runner's client reads it)."""
    if not resources:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources=resources)


def require_workers_with(address: str, resources: dict[str, float], timeout_s: float = 30.0) -> None:
    """Fail unless a worker of the scheduler at ``address`` has every resource in the amount a point asks for:
    Dask would otherwise keep the points waiting for such a worker forever."""
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
    fitting = [w for w in workers if all(w.get("resources", {}).get(k, 0) >= v for k, v in resources.items())]
    if not fitting:
        have = sorted({f"{k}={v:g}" for w in workers for k, v in w.get("resources", {}).items()}) or ["none"]
        raise ValueError(
            f"no worker of the Dask scheduler at {address} has the point resources "
            f"{', '.join(f'{k}={v:g}' for k, v in resources.items())} (its {len(workers)} workers have: "
            f"{', '.join(have)}); start workers with `dask worker {address} --resources ...`"
        )


def _track(grid: SweepGrid, results: list[dict], name: str, project_dir: Path) -> None:
    """Per task a parent run, the teacher and every point as children (alap.tracking.runs.log_sweep_task)."""
    tracker = Tracker.connect(project_dir)
    grid_id = {
        "out_root": str(grid.out_root),
        "points": [[p.task, p.weight, p.latency or p.sparsity] for p in grid.points],
    }
    for task_name, (params, paths) in grid.teachers.items():
        points = [
            SweepPointRun(p.name, p.params, p.paths, p.point_dir, p.point_dir / PARAMS_SNAPSHOT, result)
            for p, result in zip(grid.points, results)
            if p.task == task_name
        ]
        log_sweep_task(tracker, name, grid_id, task_name, params, paths, points, project_dir)


@flow(name="alap-sweep")
def sweep(
    tasks: list[str] | None = None,
    sparsities: list[float] | None = None,
    sparsity_weights: list[float] | None = None,
    devices: list[str] | None = None,
    latency_points: list[str] | None = None,
    params_path: str = "params.yaml",
    out_root: str = "sweeps/latest",
    torch_home: str = str(DEFAULT_TORCH_HOME),
    name: str = "sweep",
    project_dir: str = ".",
    track: bool = True,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    dask_processes: bool = True,
    max_threads: int | None = None,
    point_resources: dict[str, float] | None = None,
) -> list[dict]:
    """Sweep tasks x sparsity weights x points (sparsities and latency budgets, e.g. ``cpu-t2-33ms``) from the
    base params; returns one summary per point.

    Params are validated (and the grid resolved) before any work, so a bad value fails at once; the work then
    runs as the subflow ``alap-sweep-grid`` on the chosen task runner. ``point_resources`` (e.g. ``{"GPU": 1}``)
    needs ``dask_address``: a cluster whose workers were started with those resources.
    """
    if point_resources and not dask_address:
        raise ValueError("point_resources need a Dask cluster whose workers have them: give dask_address too")
    grid = resolve_grid(
        load_params(params_path),
        Path(out_root).resolve(),
        tasks,
        sparsities,
        sparsity_weights,
        devices,
        latency_points,
    )
    shares_process = not (dask_address or dask_workers) or not dask_processes
    with_dropout = [name for name in grid.teachers if getattr(grid.base.model, grid.base.tasks[name].arch).dropout]
    if shares_process and with_dropout:
        get_run_logger().warning(
            "%s train with dropout: points running as threads of one process draw their dropout masks from one "
            "shared torch generator, so they are not bitwise reproducible; run them as processes "
            "(--dask-workers N) for that",
            ", ".join(with_dropout),
        )
    if point_resources:
        require_workers_with(dask_address, point_resources)
    runner = task_runner(dask_address, dask_workers, dask_processes, max_threads)
    return sweep_grid.with_options(task_runner=runner)(
        grid=grid,
        torch_home=torch_home,
        name=name,
        project_dir=project_dir,
        track=track,
        point_resources=point_resources,
    )


def resource(text: str) -> tuple[str, float]:
    """``--point-resources`` item: ``NAME=AMOUNT`` (Dask's resource syntax), e.g. ``GPU=1``."""
    name, sep, amount = text.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = -1.0
    if not sep or not name or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=AMOUNT with AMOUNT > 0, e.g. GPU=1")
    return name, value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the alap sweep flow once.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tasks", nargs="+")
    parser.add_argument("--sparsities", nargs="+", type=float)
    parser.add_argument(
        "--latency-points",
        nargs="+",
        help="latency budgets <device>-<p50>ms, e.g. cpu-t2-33ms (backend, batch size: params' sweep.latency)",
    )
    parser.add_argument("--weights", nargs="+", type=float, help="condense sparsity weights")
    parser.add_argument("--devices", nargs="+", help="profile devices, e.g. cpu-t1 cpu-t2 cuda0")
    parser.add_argument("--out-root", default="sweeps/latest")
    parser.add_argument("--name", default="sweep")
    parser.add_argument("--dask-address", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--dask-workers", type=int, help="a local Dask cluster of this many worker processes")
    parser.add_argument(
        "--point-resources",
        nargs="+",
        type=resource,
        metavar="NAME=AMOUNT",
        help="Dask resources each point needs, e.g. GPU=1 (with --dask-address)",
    )
    args = parser.parse_args(argv)
    results = sweep(
        tasks=args.tasks,
        sparsities=args.sparsities,
        sparsity_weights=args.weights,
        devices=args.devices,
        latency_points=args.latency_points,
        params_path=args.params,
        out_root=args.out_root,
        name=args.name,
        dask_address=args.dask_address,
        dask_workers=args.dask_workers,
        point_resources=dict(args.point_resources) if args.point_resources else None,
    )
    print(json.dumps([{k: r[k] for k in ("name", "point_dir", "fid")} for r in results], indent=2))


if __name__ == "__main__":
    main()
