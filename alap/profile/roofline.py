"""How close a model runs to the hardware's limit: measured peak GFLOP/s and the achieved fraction.

A latency alone does not say whether a student is slow because it does much work or because its
layers are too thin to keep the cores busy (pruned generators often are). Dividing the model's
arithmetic rate by the rate the same runtime reaches on big dense kernels answers that.

The peak is *measured*, not taken from a datasheet: the best of a large fp32 matmul and a large
3x3 conv, on the spec's device with its thread count, through the backend being profiled (torch
eager or onnxruntime), so the ratio compares like with like. On CUDA, cuDNN convs use TF32 by
torch's default, exactly as the model's convs do. Measured once per (device, backend) per process.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alap.profile.devices import DeviceSpec, ort_session, parse_device, torch_threads

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
_BUDGET_S = 0.4  # per kernel; both kernels together stay well under the "a few seconds" budget


def _shapes(spec: DeviceSpec) -> tuple[int, tuple[int, int, int, int], int]:
    """(matmul size n, conv input NCHW, conv out channels): big enough to saturate, small enough to be quick."""
    if spec.kind == "cuda":
        return 8192, (32, 256, 64, 64), 256
    return 1024, (4, 128, 56, 56), 128


def _best_seconds(run: Callable[[], None], budget_s: float = _BUDGET_S) -> float:
    """Fastest of several timed runs after one warm-up: the peak is the best the hardware sustains."""
    run()
    best = float("inf")
    start = time.perf_counter()
    repeats = 0
    while repeats < 3 or (time.perf_counter() - start < budget_s and repeats < 50):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        repeats += 1
    return best


def _torch_kernels(spec: DeviceSpec) -> list[tuple[str, float, Callable[[], None]]]:
    n, conv_in, conv_out = _shapes(spec)
    dev = spec.torch_device
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, generator=gen)
    b = torch.randn(n, n, device=dev, generator=gen)
    x = torch.randn(conv_in, device=dev, generator=gen)
    w = torch.randn(conv_out, conv_in[1], 3, 3, device=dev, generator=gen)
    sync = torch.cuda.synchronize if spec.kind == "cuda" else (lambda: None)

    def matmul() -> None:
        torch.mm(a, b)
        sync()

    def conv() -> None:
        torch.nn.functional.conv2d(x, w, padding=1)
        sync()

    conv_flops = 2.0 * conv_in[0] * conv_out * conv_in[1] * 9 * conv_in[2] * conv_in[3]
    return [("matmul", 2.0 * n**3, matmul), ("conv3x3", conv_flops, conv)]


def _ort_kernels(spec: DeviceSpec) -> list[tuple[str, float, Callable[[], None]]]:
    from onnx import TensorProto, helper, numpy_helper

    n, conv_in, conv_out = _shapes(spec)
    rng = np.random.default_rng(0)

    def single_op_model(op: str, x_shape: tuple[int, ...], w: np.ndarray, **attrs) -> bytes:
        graph = helper.make_graph(
            [helper.make_node(op, ["x", "w"], ["y"], **attrs)],
            f"peak_{op.lower()}",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(w, "w")],
        )
        opsets = [helper.make_opsetid("", 17)]
        # The IR version the opset needs, not the onnx package's newest: an onnxruntime one release behind onnx
        # refuses newer IRs (seen: onnxruntime 1.30 and IR 14 on the GPU machine). torch's exports do the same.
        ir_version = helper.find_min_ir_version_for(opsets)
        return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version).SerializeToString()

    mm_w = rng.standard_normal((n, n), dtype=np.float32)
    mm_x = rng.standard_normal((n, n), dtype=np.float32)
    conv_w = rng.standard_normal((conv_out, conv_in[1], 3, 3), dtype=np.float32)
    conv_x = rng.standard_normal(conv_in, dtype=np.float32)
    mm = ort_session(single_op_model("MatMul", mm_x.shape, mm_w), spec)
    cv = ort_session(single_op_model("Conv", conv_x.shape, conv_w, pads=[1, 1, 1, 1]), spec)
    conv_flops = 2.0 * conv_in[0] * conv_out * conv_in[1] * 9 * conv_in[2] * conv_in[3]
    return [
        ("matmul", 2.0 * n**3, lambda: mm.run(None, {"x": mm_x})),
        ("conv3x3", conv_flops, lambda: cv.run(None, {"x": conv_x})),
    ]


@functools.cache
def _peak(spec: DeviceSpec, backend: str) -> float:
    kernels = _torch_kernels(spec) if backend == "torch" else _ort_kernels(spec)
    rates: dict[str, float] = {}
    with torch_threads(spec), torch.inference_mode():
        for name, flops, run in kernels:
            rates[name] = flops / _best_seconds(run) / 1e9
    log.info("peak %s/%s: %s GFLOP/s", spec.name, backend, ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    return max(rates.values())


def device_peak_gflops(device_spec: str | DeviceSpec, backend: str = "torch") -> float:
    """Measured fp32 peak GFLOP/s of ``backend`` on ``device_spec`` (max of big matmul and big conv).

    Cached per process: the first call per (device, backend) takes up to about a second on CPU.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    spec = device_spec if isinstance(device_spec, DeviceSpec) else parse_device(device_spec)
    return _peak(spec, backend)


def count_gmacs(model: nn.Module, image_shape: tuple[int, int, int]) -> float:
    """Multiply-accumulates the hardware executes for one image, in G (torch's ``FlopCounterMode`` / 2).

    Deliberately *not* ``alap.metrics.cost.count_gmacs``: that publishes the field's conventional
    count, which charges a transposed conv per output element and so counts a stride-2 up-conv 4x
    the products it computes. A roofline needs executed work, or a U-Net lands above 100% of peak
    (it did: 129% for a 64x64 U-Net). torch's counter charges transposed convs in the scatter form
    and counts every conv and matrix product that runs; elementwise ops are ignored (memory bound,
    well under 1% of a generator's MACs).
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(torch.zeros((1, *image_shape), device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def achieved_fraction(gmacs: float, latency_ms: float, batch: int, peak_gflops: float) -> float:
    """Fraction of peak reached: (2 * GMACs per image * batch / seconds) / peak GFLOP/s.

    ``gmacs`` is per image (batch 1) and ``latency_ms`` is for the whole batch; one MAC = 2 FLOPs.
    """
    if gmacs < 0 or latency_ms <= 0 or batch < 1 or peak_gflops <= 0:
        raise ValueError(
            f"achieved_fraction needs gmacs >= 0, latency_ms > 0, batch >= 1, peak_gflops > 0; got "
            f"gmacs={gmacs}, latency_ms={latency_ms}, batch={batch}, peak_gflops={peak_gflops}"
        )
    return (2.0 * gmacs * batch / (latency_ms / 1000.0)) / peak_gflops
