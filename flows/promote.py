"""The ``alap-promote`` flow: gate every registered student of each task and alias the best one.

All the judging happens in :func:`alap.promote.promote`; the gates come from the params file's ``promote``
section, and each flow parameter given overrides one (so a deployment or the UI can change it for a run). The
flow publishes each outcome as a markdown artifact and fails when a task has no registered version at all.

    python -m flows.promote                     # the gates of params.yaml's promote section
    python -m flows.promote --max-p50-ms 20     # one gate overridden for this run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from alap.cli import add_gate_flags, gate_overrides
from alap.config import PromoteParams, load_params
from alap.promote import promote


@task(name="promote", task_run_name="promote-{task_name}", cache_policy=NO_CACHE)
def promote_task(task_name: str, gates: PromoteParams, project_dir: str = ".") -> dict:
    """Promote one task's registered students; the outcome (each gate's limit, each candidate's values) becomes a
    markdown artifact ``promotion-<task>``. Returns the champion's version and run name (None when none passes)."""
    result = promote(task_name, gates, project_dir=project_dir)
    get_run_logger().info("%s", result.report())
    create_markdown_artifact(
        result.markdown(gates),
        key=f"promotion-{task_name}".lower().replace("_", "-"),
        description=f"promotion of alap-{task_name} on {gates.device}/{gates.backend}",
    )
    return {
        "model": result.model,
        "changed": result.changed,
        "champion": result.champion.version if result.champion else None,
        "champion_run": result.champion.run_name if result.champion else None,
        "passed": [c.version for c in result.candidates if c.passed],
    }


@flow(name="alap-promote")
def promote_flow(
    tasks: list[str] | None = None,
    device: str | None = None,
    backend: str | None = None,
    max_p50_ms: float | None = None,
    max_fid_ratio: float | None = None,
    max_lpips_teacher: float | None = None,
    prefer: str | None = None,
    precisions: list[str] | None = None,
    params_path: str = "params.yaml",
    project_dir: str = ".",
) -> dict[str, dict]:
    """Promote per task (default: params.yaml's run_tasks); returns per task the champion version (or None).

    A gate left None keeps the params file's ``promote`` value; the others are validated like that section."""
    params = load_params(params_path)
    gates = params.promote.with_overrides(
        device=device,
        backend=backend,
        max_p50_ms=max_p50_ms,
        max_fid_ratio=max_fid_ratio,
        max_lpips_teacher=max_lpips_teacher,
        prefer=prefer,
        precisions=precisions,
    )
    return {task_name: promote_task(task_name, gates, project_dir) for task_name in tasks or params.run_tasks}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run the alap promotion flow once (gates: the params file's "
        "promote section; a flag overrides its gate)."
    )
    parser.add_argument("--tasks", nargs="+")
    add_gate_flags(parser)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    promote_flow(tasks=args.tasks, params_path=args.params, **gate_overrides(args))


if __name__ == "__main__":
    main()
