"""The ``evaluate@`` steps: one model's quality and size on the task's test split (alap.evaluate)."""

from __future__ import annotations

from pathlib import Path

from alap.config import Params
from alap.evaluate import evaluate_model
from alap.paths import TaskPaths


def evaluate_entry(
    params: Params,
    task_name: str,
    model_name: str,
    sparsity: float | None,
    torch_home: Path,
    point_dir: Path | None = None,
    paths: TaskPaths | None = None,
) -> dict:
    """Evaluate one model of a task into ``<paths.reports>/<task>/<model>/`` (default ``reports/...``)."""
    paths = paths or TaskPaths(task_name)
    return evaluate_model(
        params,
        task_name,
        model_name,
        paths.checkpoint(model_name, point_dir),
        paths.teacher,
        paths.report_dir / model_name,
        torch_home,
        sparsity=sparsity,
        real_cache=paths.real_features,
    )
