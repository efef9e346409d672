"""Log a task's benchmark results to the MLflow experiment ``alap-bench`` through alap.tracking.

One parent run per task and configuration (``bench-<task>``, found again by a key of the params and the git
commit, so a rerun attaches to it), one child run per row (``teacher``, ``condensed``, ``<method>-b<budget>``)
with the method's settings as params, every number of the row as a metric, and its metrics/latency JSON and
image grid as artifacts. Tracking is a side channel: results are written to disk before this runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alap.bench.params import BenchParams
from alap.config import Params
from alap.tracking import Tracker, git_commit, pipeline_key

log = logging.getLogger(__name__)

EXPERIMENT = "alap-bench"
ARTIFACTS = ("metrics.json", "latency.json", "grid.png")
_PARAM_FIELDS = ("method", "budget", "source", "tune", "teacher", "features", "steps", "target_gmacs")


def row_metrics(row: dict[str, Any]) -> dict[str, float]:
    """Every top-level number of a row (quality, cost, latency, deviation, wall ratio) plus the total wall time."""
    numbers = {k: float(v) for k, v in row.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _PARAM_FIELDS}
    wall = row.get("wall_s", {}).get("total")
    if wall is not None:
        numbers["wall_s"] = float(wall)
    return numbers


def log_task(results: dict[str, Any], params: Params, bench: BenchParams, out_dir: Path,
             project_dir: Path = Path("."), tracker: Tracker | None = None) -> str:
    """Log one task's ``results`` (as written by :func:`alap.bench.run.run_task`); return the parent run id."""
    task = results["task"]
    tracker = tracker or Tracker.connect(project_dir)
    config = {"params": params.model_dump(mode="json"), "bench": bench.model_dump(mode="json"), "task": task}
    parent = tracker.parent_run(EXPERIMENT, f"bench-{task}", pipeline_key(config, git_commit(project_dir)),
                                tags={"alap.task": task, "alap.profile": params.profile_name})
    for row in [*results["references"], *results["rows"]]:
        folder = out_dir / row["dir"]
        artifacts = [folder / name for name in ARTIFACTS if (folder / name).is_file()]
        settings = {k: row.get(k) for k in _PARAM_FIELDS if k in row}
        if "student" in row:
            settings["knob"] = row["student"].get("knob")
        tracker.log_point(parent, row["model"], {"task": task, **settings}, row_metrics(row), artifacts)
    tracker.finish_run(parent)
    log.info("%s: %d benchmark rows logged to MLflow experiment %s", task,
             len(results["references"]) + len(results["rows"]), EXPERIMENT)
    return parent
