"""The ``alap-pipeline`` flow, what `make demo` runs: ``dvc repro`` stage group by stage group, then the summary,
MLflow and promotion.

DVC decides what is stale (no Prefect caching, see flows/tasks.py); Prefect adds retries for transient
failures, one place to watch the run, a table artifact of reports/summary.csv, the MLflow logging of every
model (alap.tracking.runs: a parent run per task, a child per model, students registered) and the promotion of a
champion per task with the params' gates. The params are validated before the first stage, so a bad params.yaml
fails at once instead of being retried. Without PREFECT_API_URL, Prefect runs the flow on a temporary local
server; its runs stay in Prefect's database, which `make ui` shows.

    python -m flows.pipeline                # every stage group of dvc.yaml, then a terminal summary
    python -m flows.pipeline --stages data train
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from alap.config import Params, load_params
from alap.metrics.names import LatencyKey
from alap.report.headline import headline_rows, render
from alap.tracking.client import Tracker
from alap.tracking.runs import SUMMARY_FILE, log_pipeline_outputs, log_task_summary, summary_rows, task_report_files
from flows.promote import promote_task
from flows.tasks import dvc_executable, dvc_repro

REPORT_STAGE = "report"
SUMMARY_ARTIFACT = "alap-summary"


def stage_groups(project_dir: str | Path) -> list[str]:
    """The stage groups of the project's dvc.yaml in file order, which dvc.yaml keeps in dependency order.

    Read from ``dvc stage list`` so that a stage added to dvc.yaml needs no second edit here. A ``foreach`` group
    that expands to no stage (``import`` when no task imports its teacher) is left out: ``dvc repro`` of a name
    that matches no stage would reproduce the whole pipeline.
    """
    listed = subprocess.run(
        [str(dvc_executable()), "stage", "list", "--name-only", "--fail", "dvc.yaml"],
        cwd=project_dir,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        raise RuntimeError(f"`dvc stage list` in {project_dir} failed: {(listed.stderr or listed.stdout).strip()}")
    return list(dict.fromkeys(name.partition("@")[0] for name in listed.stdout.split()))


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(project_dir: str) -> int:
    """reports/summary.csv as a Prefect table artifact (key ``alap-summary``); returns its row count."""
    rows = summary_rows(Path(project_dir) / "reports")
    create_table_artifact(rows, key=SUMMARY_ARTIFACT, description="reports/summary.csv of the latest pipeline run")
    return len(rows)


@task(name="log-to-mlflow", cache_policy=NO_CACHE)
def log_outputs(params: Params, project_dir: str, params_file: str) -> dict:
    """Every model of every task to MLflow; returns per task its parent run and logged children."""
    return log_pipeline_outputs(params, Path(project_dir), Path(params_file))


@task(name="summarize-task", task_run_name="summarize-{task_name}", cache_policy=NO_CACHE)
def summarize_task(task_name: str, logged: dict, champion: int | None, project_dir: str) -> str | None:
    """The task's parent run gets the report files and its best student's metrics."""
    reports = Path(project_dir) / "reports"
    tracker = Tracker.connect(project_dir)
    return log_task_summary(
        tracker, logged["parent_id"], logged["children"], champion, task_report_files(reports, task_name)
    )


@flow(name="alap-track")
def track_outputs(params: Params, project_dir: str, params_file: str) -> dict:
    """The pipeline's outputs into MLflow: every model of every task logged, students registered, a champion
    promoted per task with the params' gates, and each task's parent run summarized. Returns per task the parent
    run and child count (``mlflow``) and the promotion outcome (``promotion``)."""
    logged = log_outputs(params, project_dir, params_file)
    outcome: dict = {"mlflow": {}, "promotion": {}}
    for task_name, entry in logged.items():
        outcome["mlflow"][task_name] = {"parent_id": entry["parent_id"], "children": len(entry["children"])}
        promoted = promote_task(task_name, params.promote, project_dir)
        models = [child["name"] for child in entry["children"] if child.get("version") == promoted["champion"]]
        outcome["promotion"][task_name] = {**promoted, "champion_model": models[0] if models else None}
        summarize_task(task_name, entry, promoted["champion"], project_dir)
    return outcome


@flow(name="alap-pipeline")
def pipeline(
    params_path: str = "params.yaml", project_dir: str = ".", stages: list[str] | None = None, track: bool = True
) -> dict:
    """Reproduce ``stages`` (default: every stage group of dvc.yaml, in order) in the DVC project ``project_dir``.

    When the report stage ran, its summary becomes a table artifact and (``track``) every model is logged to
    MLflow under one parent run per task, students are registered, and each task's champion is promoted with the
    params' ``promote`` gates.
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve()
    params_file = project / params_path
    params = load_params(params_file)  # ParamsError: fail before any stage, never retried
    order = list(stages or stage_groups(project))
    for stage in order:
        dvc_repro(stage, str(project))
    outcome: dict = {"stages": order}
    if REPORT_STAGE in order:
        outcome["summary_rows"] = publish_summary(str(project))
        if track:
            outcome.update(track_outputs(params, str(project), str(params_file)))
    logger.info("pipeline done: %s", {k: v for k, v in outcome.items() if k != "promotion"})
    return outcome


def terminal_summary(outcome: dict, params: Params, project_dir: Path) -> str:
    """What `make demo` ends with: teacher vs students per task, and how to open the UIs."""
    gate = LatencyKey(params.promote.device, params.promote.backend)
    promotion = outcome.get("promotion", {})
    champions = {task: p["champion_model"] for task, p in promotion.items()}
    earlier = {task: p["champion"] for task, p in promotion.items() if p["champion"] and not p["champion_model"]}
    rows = headline_rows(pd.read_csv(project_dir / "reports" / SUMMARY_FILE), gate)
    return (
        render(rows, gate, champions, earlier)
        + "\nreports/index.html: tables, Pareto plots, image grids.  `dvc metrics show`: these numbers per model."
        + "\nmake ui: MLflow (runs, registry) at http://127.0.0.1:5000, Prefect (runs) at http://127.0.0.1:4200\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the alap pipeline flow once.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--stages", nargs="+", help="stage groups in order (default: every group of dvc.yaml)")
    parser.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    args = parser.parse_args(argv)
    outcome = pipeline(
        params_path=args.params, project_dir=args.project_dir, stages=args.stages, track=not args.no_track
    )
    if REPORT_STAGE in outcome["stages"]:
        project = Path(args.project_dir).resolve()
        print(terminal_summary(outcome, load_params(project / args.params), project), end="")


if __name__ == "__main__":
    main()
