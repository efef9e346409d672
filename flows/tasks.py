"""Prefect task wrappers shared by the flows: each one calls a single alap step (or `dvc repro`) and nothing else.

No task is cached on its inputs (docs/architecture.md: INPUTS+TASK_SOURCE caching wrongly skips `dvc repro` after
params.yaml changes, and would equally skip a sweep step whose checkpoint on disk changed): DVC decides what is stale in
the pipeline, and a sweep recomputes what it is asked to.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from alap import io
from alap.config import Params
from alap.paths import TaskPaths
from alap.steps.condense import condense_task
from alap.steps.data import prepare_data
from alap.steps.distill import distill_point
from alap.steps.evaluate import evaluate_entry
from alap.steps.profile import profile_entry
from alap.steps.prune import prune_point
from alap.train import train_teacher

# `alap <verb>` exits 2 on bad input (params, data, checkpoints): rerunning the same stage cannot help.
BAD_INPUT_EXIT = 2
STAGE_RETRIES = 2
STAGE_RETRY_DELAY_S = 5
_DVC_STAGE_EXIT = re.compile(r"exited with (\d+)")
_TAIL_LINES = 40


class StageFailed(RuntimeError):
    """``dvc repro <stage>`` failed; carries DVC's exit code, the stage command's own (when DVC printed it)
    and the last lines of output."""

    def __init__(self, stage: str, returncode: int, command_exit: int | None, tail: str) -> None:
        self.stage, self.returncode, self.command_exit = stage, returncode, command_exit
        super().__init__(
            f"`dvc repro {stage}` failed with exit code {returncode}"
            f"{f' (stage command exited with {command_exit})' if command_exit is not None else ''}:\n"
            f"{tail}"
        )


def dvc_executable() -> Path:
    """The dvc installed beside this Python, so a flow uses the project's pinned DVC, not whatever is on PATH."""
    path = Path(sys.executable).parent / "dvc"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dvc is not installed in this environment (pip install -r requirements.txt)")
    return path


def is_transient(_task: Any, _run: Any, state: Any) -> bool:
    """Retry condition: retry a failed stage unless its command reported bad input (exit code 2)."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, StageFailed) and error.command_exit == BAD_INPUT_EXIT)


@task(
    name="dvc-repro",
    task_run_name="dvc repro {stage}",
    retries=STAGE_RETRIES,
    retry_delay_seconds=STAGE_RETRY_DELAY_S,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def dvc_repro(stage: str, project_dir: str) -> None:
    """``dvc repro <stage>`` in ``project_dir``, its output streamed to the flow's log; DVC skips what is fresh."""
    logger = get_run_logger()
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    dvc = dvc_executable()
    # Stage commands say `python -m stages.<verb>`: put this environment's bin first so `python` is ours.
    env = {**os.environ, "PATH": os.pathsep.join([str(dvc.parent), os.environ.get("PATH", "")])}
    with subprocess.Popen(
        [str(dvc), "repro", stage],
        cwd=project_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            logger.info("%s", line.rstrip())
    if proc.returncode != 0:
        text = "\n".join(tail)
        found = _DVC_STAGE_EXIT.findall(text)
        raise StageFailed(stage, proc.returncode, int(found[-1]) if found else None, text)


@task(name="prepare-data", task_run_name="data {task_name}", cache_policy=NO_CACHE)
def prepare_data_task(params: Params, task_name: str) -> None:
    prepare_data(params, task_name)


@task(name="train-teacher", task_run_name="train {task_name}", cache_policy=NO_CACHE)
def train_teacher_task(params: Params, task_name: str, paths: TaskPaths) -> dict:
    result = train_teacher(params, task_name, paths)
    return {"steps": result.steps, "wall_s": result.wall_s, "psnr_test": result.psnr_test}


def _copy_atomic(source: Path, target: Path) -> None:
    with io.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


@task(name="condense", task_run_name="condense {task_name} w={params.condense.sparsity_weight}", cache_policy=NO_CACHE)
def condense_run_task(params: Params, task_name: str, teacher_paths: TaskPaths, paths: TaskPaths) -> dict:
    """Condense one shared teacher under one sparsity weight into ``paths`` (the teacher is copied in first,
    because condense, distill and evaluate read it from the run's own layout)."""
    for name in ("teacher", "teacher_aux"):
        _copy_atomic(getattr(teacher_paths, name), getattr(paths, name))
    return condense_task(params, task_name, paths)


@task(name="compress-point", task_run_name="{name}", cache_policy=NO_CACHE)
def compress_point_task(
    params: Params,
    task_name: str,
    sparsity: float | None,
    paths: TaskPaths,
    torch_home: str,
    name: str,
    latency: str | None = None,
) -> dict:
    """Prune, distill and evaluate one sweep point inside its own directory: a sparsity's, or (``latency``, one of
    params' sweep.latency.points, with ``sparsity`` None) a latency budget's; records when it ran.

    ``started``/``ended`` (wall-clock seconds) and ``worker`` (host:pid) show where and when it ran, so a sweep
    can show that its points really overlapped on separate workers. ``sparsity`` in the result is the one the
    point reached (a latency point's is known once it is pruned).
    """
    started = time.time()
    point_dir = paths.model_dir / latency if latency else paths.point_dir(sparsity)
    prune_params = params.at_latency_point(latency) if latency else params
    prune_report = prune_point(prune_params, task_name, sparsity, point_dir, paths)
    sparsity = prune_report["sparsity"]
    distill_report = distill_point(params, task_name, sparsity, point_dir, paths)
    metrics = evaluate_entry(params, task_name, point_dir.name, sparsity, Path(torch_home), point_dir, paths)
    return {
        "name": name,
        "task": task_name,
        "sparsity": sparsity,
        "point_dir": str(point_dir),
        "report_dir": str(paths.report_dir / point_dir.name),
        "started": started,
        "ended": time.time(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "prune": prune_report,
        "distill": {k: v for k, v in distill_report.items() if k != "validation"},
        "fid": metrics["fid"],
    }


@task(name="evaluate", task_run_name="evaluate {task_name}/{model_name}", cache_policy=NO_CACHE)
def evaluate_task(params: Params, task_name: str, model_name: str, paths: TaskPaths, torch_home: str) -> dict:
    return evaluate_entry(params, task_name, model_name, None, Path(torch_home), None, paths)


@task(name="profile", task_run_name="profile {task_name}/{model_name}", cache_policy=NO_CACHE)
def profile_task(
    params: Params, task_name: str, model_name: str, paths: TaskPaths, point_dir: str | None = None
) -> dict:
    result = profile_entry(params, task_name, model_name, Path(point_dir) if point_dir else None, paths)
    return result["metrics"]
