"""int8 models for onnxruntime: static quantization with calibration images, and what it costs in output quality.

A CPU with VNNI (this project's AMD EPYC has AVX-512 VNNI) runs int8 convolutions at several times the fp32 rate,
so int8 is the next lever after pruning on CPU. Static quantization (activation ranges fixed from calibration
images of the task, not measured per input) is what lets onnxruntime fuse every conv into an integer kernel.
Settings, the ones onnxruntime recommends for CNNs on x86: QDQ format, int8 weights per output channel,
uint8 activations, min-max calibration, after onnxruntime's own pre-processing (shape inference, graph fusion).
Quality is reported against the fp32 model's own output on held-out images, so the cost of quantization is
separated from the cost of pruning.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from alap.io import atomic_path
from alap.profile.devices import DeviceSpec, ort_session
from alap.profile.export import INPUT_NAME, OUTPUT_NAME, export_onnx

if TYPE_CHECKING:
    import onnxruntime
    from torch import nn

    from alap.task import Task

log = logging.getLogger(__name__)

_CPU1 = DeviceSpec(name="cpu-t1", kind="cpu", threads=1, index=None)
CALIBRATION_IMAGES = 8  # the task's images a pipeline model's activation ranges are calibrated on


def calibration_inputs(task: Task, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """The first ``count`` inputs of ``task``'s training split, whole as evaluated: what a pipeline model is
    calibrated on, so that profile (latency) and evaluate (quality) quantize it alike and the test split it is
    scored on stays unseen."""
    train = task.dataset("train", for_eval=True)
    return torch.stack([train[i]["A"] for i in range(min(count, len(train)))])


def export_int8(
    model: nn.Module, image_shape: tuple[int, int, int], calibration: torch.Tensor, out: str | os.PathLike
) -> Path:
    """``model``'s static int8 quantization at ``out``: its fp32 ONNX export (dynamic batch) quantized on
    ``calibration``; the fp32 file is not kept."""
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(model, Path(scratch) / "fp32.onnx", (1, *image_shape))
        return quantize_int8(fp32, out, calibration)


def onnx_outputs(session: onnxruntime.InferenceSession, inputs: torch.Tensor) -> torch.Tensor:
    """A generator's ONNX Runtime ``session`` run on ``inputs`` (any device): its outputs on the inputs' device."""
    out = session.run([OUTPUT_NAME], {INPUT_NAME: inputs.detach().float().cpu().numpy()})[0]
    return torch.from_numpy(out).to(inputs.device)


def quantize_int8(fp32_onnx: str | os.PathLike, out: str | os.PathLike, calibration: torch.Tensor) -> Path:
    """Write an int8 (QDQ) copy of ``fp32_onnx`` to ``out`` atomically, calibrated on ``calibration``
    ([N, C, H, W] images as the model's input expects, one at a time)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if calibration.dim() != 4 or calibration.shape[0] < 1:
        raise ValueError(f"calibration must be a non-empty [N, C, H, W] batch, got {tuple(calibration.shape)}")
    images = [x[None].detach().float().cpu().numpy() for x in calibration]

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._left, None)
            return None if item is None else {INPUT_NAME: item}

    with tempfile.TemporaryDirectory() as scratch, atomic_path(out) as tmp:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))
        quantize_static(
            str(prepared),
            str(tmp),
            Images(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    log.info("quantized %s to int8 (%d calibration images): %s", fp32_onnx, len(images), out)
    return Path(out)


def int8_output_cost(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike, images: torch.Tensor) -> dict:
    """How far the int8 model's outputs are from the fp32 model's on ``images`` (outputs in [-1, 1]): PSNR
    (peak-to-peak 2, as alap.compress.prune.output_difference) and max/mean absolute difference."""
    fp32, int8 = ort_session(fp32_onnx, _CPU1), ort_session(int8_onnx, _CPU1)
    diffs = []
    for x in images:
        feed = {INPUT_NAME: x[None].detach().float().cpu().numpy()}
        diffs.append(fp32.run([OUTPUT_NAME], feed)[0].astype(np.float64) - int8.run([OUTPUT_NAME], feed)[0])
    diff = np.stack(diffs)
    mse = float(np.mean(diff**2))
    return {
        "psnr_vs_fp32": math.inf if mse == 0 else 10.0 * math.log10(4.0 / mse),
        "max_abs_vs_fp32": float(np.abs(diff).max()),
        "mean_abs_vs_fp32": float(np.abs(diff).mean()),
        "images": len(images),
    }
