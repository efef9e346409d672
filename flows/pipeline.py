"""The ``alap-pipeline`` flow: ``dvc repro`` stage group by stage group, then the summary and MLflow.

DVC decides what is stale (no Prefect caching, see flows/tasks.py); Prefect adds retries for transient
failures, one place to watch the run, a table artifact of reports/summary.csv and the MLflow logging of every
model (alap.tracking.runs). The params are validated before the first stage, so a bad params.yaml fails at
once instead of being retried.

    python -m flows.pipeline                # every stage group of dvc.yaml
    python -m flows.pipeline --stages data train
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from alap.config import Params, load_params
from alap.tracking.runs import log_pipeline_outputs, summary_rows
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
    logged = log_pipeline_outputs(params, Path(project_dir), Path(params_file))
    return {
        task_name: {"parent_id": entry["parent_id"], "children": len(entry["children"])}
        for task_name, entry in logged.items()
    }


@flow(name="alap-pipeline")
def pipeline(
    params_path: str = "params.yaml", project_dir: str = ".", stages: list[str] | None = None, track: bool = True
) -> dict:
    """Reproduce ``stages`` (default: every stage group of dvc.yaml, in order) in the DVC project ``project_dir``.

    When the report stage ran, its summary becomes a table artifact and (``track``) every model is logged to
    MLflow under one parent run per task.
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
            outcome["mlflow"] = log_outputs(params, str(project), str(params_file))
    logger.info("pipeline done: %s", outcome)
    return outcome


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the alap pipeline flow once.")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--stages", nargs="+", help="stage groups in order (default: every group of dvc.yaml)")
    parser.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    args = parser.parse_args(argv)
    pipeline(params_path=args.params, project_dir=args.project_dir, stages=args.stages, track=not args.no_track)


if __name__ == "__main__":
    main()
