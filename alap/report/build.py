"""Build the whole report from the files the evaluate and profile stages left in reports/.

Every input is read and checked before anything is written, so a bad input file leaves the
previous report intact; every output goes through alap.io's atomic writes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from alap.io import atomic_path, write_text
from alap.metrics.names import LatencyKey
from alap.report.costs import cost_notes
from alap.report.headline import headline_rows, write_headlines
from alap.report.html import TaskSection, render_page
from alap.report.plots import gmacs_figure, latency_figure, pareto_data
from alap.report.tables import ModelReport, display_table, load_task, markdown_summary, summary_frame, task_notes

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _write_png(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_paths(reports_dir: Path, task: str) -> dict[str, Path]:
    """Where one task's plot files go (DVC's ``plots:`` and the HTML page name them)."""
    plots = Path(reports_dir) / PLOTS_DIR
    return {
        f"{task}_pareto_csv": plots / f"{task}_pareto.csv",
        f"{task}_pareto_latency": plots / f"{task}_pareto_latency.png",
        f"{task}_pareto_gmacs": plots / f"{task}_pareto_gmacs.png",
    }


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def build_report(
    reports_dir: Path, tasks: list[str], gate: LatencyKey, models_dir: Path | None = None
) -> dict[str, Path]:
    """Write summary.csv, summary.md, per-task Pareto plots and data, index.html, and the headline metrics (p50 and
    speed-up on ``gate``, the device promotion gates on) under ``reports_dir``.

    With ``models_dir`` (the stages' ``models/``), each task's notes also give the teacher's training time and
    test PSNR and each student's compression time relative to it.

    Returns the written paths by name (``summary_csv``, ``summary_md``, ``index_html``,
    ``<task>_pareto_csv``, ``<task>_pareto_latency``, ``<task>_pareto_gmacs``).
    Raises FileNotFoundError naming the expected metrics file for a task with no metrics at all,
    and ValueError for an empty or repeated task list or a malformed input file.
    """
    reports_dir = Path(reports_dir)
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be a non-empty list of distinct task names, got {tasks!r}")
    loaded: dict[str, list[ModelReport]] = {task: load_task(reports_dir, task) for task in tasks}
    frame = summary_frame(loaded)
    notes = {task: task_notes(reports) for task, reports in loaded.items()}
    if models_dir is not None:
        for task, reports in loaded.items():
            notes[task] += cost_notes(models_dir, reports_dir, task, reports)

    written = {"summary_csv": reports_dir / "summary.csv", "summary_md": reports_dir / "summary.md"}
    _write_csv(frame, written["summary_csv"])
    write_text(written["summary_md"], markdown_summary(frame, loaded, notes))

    sections: list[TaskSection] = []
    for task, reports in loaded.items():
        task_frame = frame[frame["task"] == task].reset_index(drop=True)
        paths = plot_paths(reports_dir, task)
        _write_csv(pareto_data(task_frame, reports), paths[f"{task}_pareto_csv"])
        _write_png(latency_figure(task, task_frame, reports), paths[f"{task}_pareto_latency"])
        _write_png(gmacs_figure(task, task_frame), paths[f"{task}_pareto_gmacs"])
        written.update(paths)
        headers, rows = display_table(task_frame, reports)
        sections.append(
            TaskSection(
                task=task,
                headers=headers,
                rows=rows,
                notes=notes[task],
                plots=[_relative(paths[f"{task}_pareto_{kind}"], reports_dir) for kind in ("gmacs", "latency")],
                grids=[(r.model, None if r.grid is None else _relative(r.grid, reports_dir)) for r in reports],
            )
        )

    for path in write_headlines(reports_dir, headline_rows(frame, gate)):
        written[f"headline:{path.parent.name}/{path.stem}"] = path
    written["index_html"] = reports_dir / "index.html"
    write_text(written["index_html"], render_page(sections))
    log.info("report for %s written to %s", ", ".join(tasks), reports_dir)
    return written
