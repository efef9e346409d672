"""ONNX export of a generator, and a check that onnxruntime computes what PyTorch computes.

Exporter choice: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). In
torch 2.14 the default is the dynamo exporter, which needs ``onnxscript`` (not installed here, and
one more moving part on air-gapped machines); the TorchScript exporter ships inside torch, works
offline, and handles every op our generators use (Conv2d, ConvTranspose2d, Instance/BatchNorm,
reflection padding, nearest 2x resizing, concat skips, Tanh). Its deprecation warning is silenced on purpose; anything
it gets wrong is caught by ``check_onnx``, which every profile runs before timing anything.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alap.io import atomic_path
from alap.profile.devices import DeviceSpec, ort_session

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"
_CPU1 = DeviceSpec(name="cpu-t1", kind="cpu", threads=1, index=None)


class OnnxMismatch(RuntimeError):
    """onnxruntime's output differs from PyTorch's by more than the tolerance."""


def _model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, int, int, int],
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` (in eval mode) to ``path`` atomically and validate it with ``onnx.checker``.

    ``input_shape`` is (N, C, H, W); with ``dynamic_batch`` the batch axis is symbolic so one file
    serves every batch size, otherwise the file only accepts batch N. The model's train/eval mode
    is restored afterwards.
    """
    import onnx

    if len(input_shape) != 4 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes, got {tuple(input_shape)}")
    example = torch.zeros(tuple(int(d) for d in input_shape), device=_model_device(model))
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*feature will be removed.*", category=DeprecationWarning)
            # Benign for generators, noisy on every export: torch's own input-size checks in the norm
            # layers get traced as constants; InstanceNorm without running stats always normalises by
            # the input's statistics ("train=True" is then correct); reflection padding's Slice ops
            # are left unfolded. TracerWarnings from the user's own code still show.
            warnings.filterwarnings(
                "ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.(functional|modules\.instancenorm)"
            )
            warnings.filterwarnings("ignore", message=".*operator 'instance_norm' is set to train=True.*")
            warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
            onnx.checker.check_model(str(tmp))
    finally:
        model.train(was_training)
    log.info(
        "exported %s to %s (opset %d, %s batch)",
        type(model).__name__,
        path,
        opset,
        "dynamic" if dynamic_batch else f"static {input_shape[0]}",
    )
    return Path(path)


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input: torch.Tensor,
    rel_tol: float = 1e-4,
) -> float:
    """Run ``path`` with onnxruntime (CPU) and PyTorch eval on ``input``; return the max abs difference.

    Raises ``OnnxMismatch`` when the difference exceeds ``rel_tol`` times the range of the PyTorch
    output (at least 1). Why 1e-4: float32 has ~1.2e-7 relative precision and the two runtimes sum
    conv products in different orders, so over ~20 conv/norm layers honest differences stay around
    1e-6..1e-5 of the output range; real export bugs (wrong padding mode, norm statistics, a dropped
    skip) change outputs by 1e-2 or more. 1e-4 sits safely between the two.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist (export it with export_onnx first)")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model(input.to(_model_device(model)))
    finally:
        model.train(was_training)
    if not isinstance(expected, torch.Tensor):
        raise TypeError(f"check_onnx expects a model returning one tensor, got {type(expected).__name__}")
    expected_np = expected.float().cpu().numpy()
    session = ort_session(path, _CPU1)
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: input.detach().float().cpu().numpy()})
    if actual.shape != expected_np.shape:
        raise OnnxMismatch(f"{path}: onnxruntime output shape {actual.shape} != PyTorch {expected_np.shape}")
    max_diff = float(np.max(np.abs(actual - expected_np))) if actual.size else 0.0
    out_range = float(expected_np.max() - expected_np.min()) if expected_np.size else 0.0
    tolerance = rel_tol * max(out_range, 1.0)
    if not max_diff <= tolerance:  # also catches NaN
        raise OnnxMismatch(
            f"{path}: onnxruntime differs from PyTorch by max abs {max_diff:.3g} "
            f"(tolerance {tolerance:.3g} = {rel_tol:g} x output range {out_range:.3g})"
        )
    log.info("ONNX check %s: max abs diff %.3g (tolerance %.3g)", path, max_diff, tolerance)
    return max_diff
