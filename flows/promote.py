"""The ``alap-promote`` flow: gate every registered student of each task and alias the best one.

All the judging happens in :func:`alap.promote.promote`; the flow passes the gates through as parameters
(so a deployment or the UI can change them), publishes each outcome as a markdown artifact and fails when a
task has no registered version at all.

    python -m flows.promote --device cpu-t2 --max-p50-ms 33
"""

from __future__ import annotations

import argparse
from typing import Literal, Sequence

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from alap.config import load_params
from alap.promote import promote


@flow(name="alap-promote")
def promote_flow(tasks: list[str] | None = None, device: str = "cpu-t2", backend: str = "onnxruntime",
                 max_p50_ms: float = 33.0, max_fid_ratio: float = 1.10, max_lpips_teacher: float = 0.05,
                 prefer: Literal["quality", "speed"] = "quality", params_path: str = "params.yaml",
                 project_dir: str = ".") -> dict[str, dict]:
    """Promote per task (default: params.yaml's run_tasks); returns per task the champion version (or None)."""
    logger = get_run_logger()
    outcome = {}
    for task_name in tasks or load_params(params_path).run_tasks:
        result = promote(task_name, device, backend=backend, max_p50_ms=max_p50_ms, max_fid_ratio=max_fid_ratio,
                         max_lpips_teacher=max_lpips_teacher, prefer=prefer, project_dir=project_dir)
        report = result.report()
        logger.info("%s", report)
        create_markdown_artifact(f"```\n{report}\n```", key=f"promotion-{task_name}".lower().replace("_", "-"),
                                 description=f"promotion of alap-{task_name} on {device}/{backend}")
        outcome[task_name] = {"model": result.model, "changed": result.changed,
                              "champion": result.champion.version if result.champion else None,
                              "passed": [c.version for c in result.candidates if c.passed]}
    return outcome


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the alap promotion flow once.")
    parser.add_argument("--tasks", nargs="+")
    parser.add_argument("--device", default="cpu-t2")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--max-p50-ms", type=float, default=33.0)
    parser.add_argument("--max-fid-ratio", type=float, default=1.10)
    parser.add_argument("--max-lpips-teacher", type=float, default=0.05)
    parser.add_argument("--prefer", choices=["quality", "speed"], default="quality")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    promote_flow(tasks=args.tasks, device=args.device, backend=args.backend, max_p50_ms=args.max_p50_ms,
                 max_fid_ratio=args.max_fid_ratio, max_lpips_teacher=args.max_lpips_teacher, prefer=args.prefer,
                 params_path=args.params)


if __name__ == "__main__":
    main()
