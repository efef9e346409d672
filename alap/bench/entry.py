"""The ``alap bench`` verb as one function: run tasks, write DVC metrics, log to MLflow, build the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alap import io
from alap.bench.params import BenchParams
from alap.bench.report import build_report
from alap.bench.run import RECORDED_METRICS, UNCERTAINTY, budget_name, run_task
from alap.bench.stats import spread
from alap.config import Params

log = logging.getLogger(__name__)

METRIC_KEYS = (*RECORDED_METRICS, *UNCERTAINTY, "gmacs_deviation", "wall_ratio")


def dvc_metrics(results: dict[str, Any], latency_key: str) -> dict[str, Any]:
    """One task's numbers for `dvc metrics show`: ``{teacher: {...}, condensed: {...}, b4: {method: {...}}}``, a
    method's being the mean over its seeds of each metric and, as ``<metric>_std``, their standard deviation;
    ``p50_ms`` is the latency the report ranks by."""

    def numbers(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, name in [*((k, k) for k in METRIC_KEYS), (latency_key, "p50_ms")]:
            value = spread(rows, key)
            if value is not None:
                out[name] = value.mean
                if len(rows) > 1:
                    out[f"{name}_std"] = value.std
        return out

    metrics: dict[str, Any] = {ref["method"]: numbers([ref]) for ref in results["references"]}
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in results["rows"]:
        grouped.setdefault(budget_name(row["budget"]), {}).setdefault(row["method"], []).append(row)
    for budget, by_method in grouped.items():
        metrics[budget] = {method: numbers(rows) for method, rows in by_method.items()}
    return metrics


def bench(
    params: Params,
    settings: BenchParams,
    tasks: list[str] | None,
    torch_home: Path,
    run: bool = True,
    report: bool = True,
    project_dir: Path = Path("."),
) -> dict[str, Any]:
    """Benchmark ``tasks`` (default: all of bench/params.yaml) and/or (re)build reports/benchmark.md."""
    tasks = list(tasks or settings.tasks)
    unknown = [t for t in tasks if t not in params.tasks]
    if unknown:
        raise ValueError(f"tasks {unknown} are not defined in the pipeline's params (tasks: {sorted(params.tasks)})")
    done: dict[str, Any] = {}
    if run:
        for task in tasks:
            results = run_task(params, settings, task, torch_home)
            io.write_json(Path(settings.metrics_dir) / f"{task}.json", dvc_metrics(results, settings.latency_key()))
            if settings.track:
                _track(results, params, settings, project_dir)
            done[task] = results
    if report:
        done["report"] = build_report(settings, list(dict.fromkeys([*settings.tasks, *tasks])))
    return done


def _track(results: dict[str, Any], params: Params, settings: BenchParams, project_dir: Path) -> None:
    from alap.tracking.client import TrackingUnavailable  # imports mlflow: only when tracking
    from alap.tracking.runs import log_bench_task

    try:
        log_bench_task(results, params, settings, Path(settings.out_dir) / results["task"], project_dir)
    except TrackingUnavailable as exc:  # a side channel: results are on disk already
        log.warning("benchmark of %s not logged to MLflow: %s", results["task"], exc)
