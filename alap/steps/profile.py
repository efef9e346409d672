"""The ``profile@`` steps: one model's latency on every configured device x backend, and its ONNX file; with
``quantize.int8`` also its static int8 quantization's (backend onnxruntime-int8, CPU devices)."""

from __future__ import annotations

from pathlib import Path

import torch

from alap import io
from alap.config import Params
from alap.paths import TaskPaths
from alap.profile.latency import profile_model
from alap.profile.quantize import calibration_inputs
from alap.task import Task


def profile_entry(
    params: Params, task_name: str, model_name: str, point_dir: Path | None = None, paths: TaskPaths | None = None
) -> dict:
    """Time one model on every configured device x backend; ONNX file and latency JSON beside its reports."""
    task = Task.from_params(params, task_name)
    paths = paths or TaskPaths(task_name)
    model, _ = task.load_generator(paths.checkpoint(model_name, point_dir))
    input_nc, _ = task.channels
    shape = (input_nc, task.image_size, task.image_size)
    return profile_into(params, model, shape, paths.report_dir / model_name, task_name, model_name)


def profile_into(
    params: Params,
    model: torch.nn.Module,
    shape: tuple[int, int, int],
    out_dir: Path,
    task_name: str,
    model_name: str,
    progress: bool = True,
) -> dict:
    """Time ``model`` on ``params.profile``'s devices x backends x batch sizes; write the ONNX file and
    ``latency.json`` into ``out_dir``; return :func:`profile_model`'s result. The profile stage and the benchmark
    both measure this way. ``params.quantize.int8`` times the int8 quantization too, calibrated on the task's
    first training inputs (alap.profile.quantize.calibration_inputs), as evaluate scores it."""
    p = params.profile
    calibration = calibration_inputs(Task.from_params(params, task_name)) if params.quantize.int8 else None
    result = profile_model(
        model,
        shape,
        p.devices,
        p.backends,
        p.batch_sizes,
        onnx_dir=out_dir,
        warmup=p.warmup,
        min_repeats=p.min_repeats,
        min_seconds=p.min_seconds,
        name="model",
        progress=progress,
        int8_calibration=calibration,
    )
    peaks = {f"{r['device']}.{r['backend']}": r["peak_gflops"] for r in result["records"]}
    io.write_json(
        out_dir / "latency.json",
        {
            **result["metrics"],
            "records": result["records"],
            "peak_gflops": peaks,
            "skipped": result["skipped"],
            "onnx_max_abs_diff": result["onnx_max_abs_diff"],
            "task": task_name,
            "model": model_name,
        },
    )
    return result
