"""Latency of a generator per device x backend x batch size, and the whole-model profile.

Users choose a student by its latency on their device, so each number must be a stable median
measured the way the model will run: eval mode, no autograd, warmed up, the spec's thread count,
and (CUDA) synchronised so queued kernels are counted. ``profile_model`` exports the model once,
checks onnxruntime against PyTorch before timing anything (a fast wrong model is worthless), then
times every combination and returns docs/architecture.md's flat metric keys plus one record per combination.

Measurements are serialised within a process: thread counts are process-global, and two timings
running side by side would measure each other.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from tqdm.auto import tqdm

from alap.compress.params import INT8_BACKEND
from alap.metrics.names import LatencyKey
from alap.profile.devices import (
    DeviceSpec,
    DeviceUnavailable,
    available_devices,
    ort_session,
    parse_device,
    torch_threads,
)
from alap.profile.export import INPUT_NAME, OUTPUT_NAME, check_onnx, export_onnx
from alap.profile.quantize import quantize_int8
from alap.profile.roofline import BACKENDS, achieved_fraction, count_gmacs, device_peak_gflops

log = logging.getLogger(__name__)

_MEASURE_LOCK = threading.Lock()

# What measure_latency times: the peak-measured runtimes, plus ONNX Runtime on an int8 (QDQ) file from
# alap.profile.quantize, which it runs like any ONNX file but on the CPU only.
ONNX_BACKENDS = ("onnxruntime", INT8_BACKEND)
TIMED_BACKENDS = (*BACKENDS, INT8_BACKEND)


def latency_metric_names(device: str, backend: str, batch_size: int) -> tuple[str, str]:
    """The (p50, p90) metric keys of the contract: ``latency.<device>.<backend>.bs<N>.p50_ms`` / ``.p90_ms``."""
    if backend not in TIMED_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {TIMED_BACKENDS}")
    key = LatencyKey(device, backend, int(batch_size))
    return key.p50, key.p90


def flatten_latency(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Flat ``{metric key: ms}`` from measurement records (``device``, ``backend``, ``batch_size``, ``p50_ms``,
    ``p90_ms``)."""
    flat: dict[str, float] = {}
    for rec in records:
        p50_key, p90_key = latency_metric_names(rec["device"], rec["backend"], rec["batch_size"])
        flat[p50_key] = float(rec["p50_ms"])
        flat[p90_key] = float(rec["p90_ms"])
    return flat


class _LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of live tensors during a forward: weights and input, plus every new tensor storage.

    A CPU process has no allocator statistics like ``torch.cuda.max_memory_allocated``, and its RSS
    hides activations inside memory the allocator kept from earlier work. Watching every aten op
    instead gives the same quantity as CUDA's max allocated (weights + input + activations, without
    allocator rounding or kernel scratch space), deterministically. A storage counts from the op that
    creates it until its last reference dies (checked at every op boundary).
    """

    def __init__(self, resident: list[torch.Tensor]) -> None:
        super().__init__()
        refs = {StorageWeakRef(t.untyped_storage()).cdata: t.untyped_storage().nbytes() for t in resident}
        self._resident = set(refs)
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = sum(refs.values())

    def _drop_dead(self) -> None:
        for key, (ref, nbytes) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._drop_dead()
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self._resident and ref.cdata not in self._live:
                    nbytes = t.untyped_storage().nbytes()
                    self._live[ref.cdata] = (ref, nbytes)
                    self.current += nbytes
        self.peak = max(self.peak, self.current)
        return out


def _torch_cpu_peak_mb(model: nn.Module, x: torch.Tensor) -> float:
    tensors = [*model.parameters(), *model.buffers(), x]
    with torch.inference_mode(), _LiveTensorPeak(tensors) as tracker:
        model(x)
    return tracker.peak / 2**20


# Runs in a fresh interpreter (onnxruntime + numpy only, no torch): a process that never ran other
# work has no freed-but-kept memory, so its peak RSS above the pre-session baseline is what the
# session needs (its weights, arena, activations, thread stacks). Linux resets the peak (VmHWM)
# when "5" is written to /proc/self/clear_refs.
_ORT_PEAK_SCRIPT = """
import json, sys
import numpy as np
from alap.profile.devices import DeviceSpec, ort_session
def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
path, threads, runs, shape = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(v) for v in sys.argv[4:]]
x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = kb("VmRSS")
session = ort_session(path, DeviceSpec(f"cpu-t{threads}", "cpu", threads, None))
for _ in range(runs):
    session.run(None, {"input": x})
print(json.dumps({"peak_kb": kb("VmHWM") - base + x.nbytes // 1024}))
"""


def _ort_cpu_peak_mb(onnx_path: Path, spec: DeviceSpec, shape: tuple[int, ...]) -> tuple[float | None, str]:
    """Peak RSS of a fresh process that loads and runs the ONNX file; None with the reason if unmeasurable."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", _ORT_PEAK_SCRIPT, str(onnx_path), str(spec.threads), "2", *map(str, shape)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("peak memory of %s on %s not measured: %s", onnx_path, spec.name, reason)
        return None, f"null: fresh-process peak RSS failed ({reason})"
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_kb"] / 1024.0, "fresh_process_rss_hwm"


def _time_loop(run: Callable[[], None], warmup: int, min_repeats: int, min_seconds: float) -> list[float]:
    """Warm up, then time ``run`` until both ``min_repeats`` runs and ``min_seconds`` have passed."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def _on_device(model: nn.Module, spec: DeviceSpec) -> nn.Module:
    """``model`` on the spec's device; a copy when it lives elsewhere, never moving the caller's model."""
    first = next(model.parameters(), None)
    if first is not None and first.device != spec.torch_device:
        return copy.deepcopy(model).to(spec.torch_device)
    return model


def _torch_runner(model: nn.Module, spec: DeviceSpec, x: torch.Tensor) -> Callable[[], None]:
    sync = (lambda: torch.cuda.synchronize(spec.torch_device)) if spec.kind == "cuda" else (lambda: None)

    def run() -> None:
        model(x)
        sync()

    return run


def _ort_runner(onnx_path: Path, spec: DeviceSpec, x: torch.Tensor) -> Callable[[], None]:
    session = ort_session(onnx_path, spec)
    feed = {INPUT_NAME: x.numpy()}
    return lambda: session.run([OUTPUT_NAME], feed)


def measure_latency(
    model_or_onnx: nn.Module | str | os.PathLike,
    device_spec: str | DeviceSpec,
    backend: str,
    batch_size: int,
    image_shape: tuple[int, int, int],
    warmup: int = 3,
    min_repeats: int = 10,
    min_seconds: float = 1.0,
    measure_peak: bool = True,
) -> dict[str, Any]:
    """Time one forward pass of a batch; return p50/p90/mean ms, images/s, peak memory and settings.

    ``backend="torch"`` takes an ``nn.Module`` (run in eval mode under ``inference_mode``);
    ``backend="onnxruntime"`` takes a path from ``export_onnx``, ``"onnxruntime-int8"`` one from
    ``alap.profile.quantize.quantize_int8`` (CPU devices only). ``image_shape`` is (C, H, W).
    Peak memory (MiB; ``peak_mem_method`` says which): torch on CUDA = ``max_memory_allocated``
    during the timed runs (weights, input, activations); torch on CPU = peak live tensor bytes of
    one extra untimed forward, the same quantity (see ``_LiveTensorPeak``); onnxruntime on CPU =
    peak RSS of a fresh process that loads and runs the file (session weights, arena, activations);
    onnxruntime on CUDA = None, since its arena is not visible from Python. ``measure_peak=False`` skips the
    memory measurement (None, ``peak_mem_method`` "not measured"): the latency planner times many candidates.
    """
    spec = device_spec if isinstance(device_spec, DeviceSpec) else parse_device(device_spec)
    if backend not in TIMED_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {TIMED_BACKENDS}")
    if backend == INT8_BACKEND and spec.kind != "cpu":
        raise DeviceUnavailable(f"{spec.name}: backend {INT8_BACKEND} runs on the CPU (onnxruntime's int8 kernels)")
    if batch_size < 1 or len(image_shape) != 3 or min_repeats < 1 or warmup < 0 or min_seconds < 0:
        raise ValueError(
            f"measure_latency needs batch_size >= 1, image_shape (C, H, W), min_repeats >= 1, warmup >= 0, "
            f"min_seconds >= 0; got batch_size={batch_size}, image_shape={image_shape}, "
            f"min_repeats={min_repeats}, warmup={warmup}, min_seconds={min_seconds}"
        )
    if backend == "torch" and not isinstance(model_or_onnx, nn.Module):
        raise TypeError(f"backend 'torch' needs an nn.Module, got {type(model_or_onnx).__name__}")
    if backend in ONNX_BACKENDS:
        if isinstance(model_or_onnx, nn.Module):
            raise TypeError(f"backend {backend!r} needs the path of an ONNX file (see export_onnx), got an nn.Module")
        if not Path(model_or_onnx).is_file():
            raise FileNotFoundError(f"ONNX file {model_or_onnx} does not exist")
    x = torch.randn((batch_size, *image_shape), generator=torch.Generator().manual_seed(0))

    with _MEASURE_LOCK, torch_threads(spec), torch.inference_mode():
        if backend in ONNX_BACKENDS:
            times = _time_loop(_ort_runner(Path(model_or_onnx), spec, x), warmup, min_repeats, min_seconds)
            if not measure_peak:
                peak, method = None, "not measured"
            elif spec.kind == "cpu":
                peak, method = _ort_cpu_peak_mb(Path(model_or_onnx), spec, tuple(x.shape))
            else:
                peak, method = None, "null: onnxruntime's CUDA arena is not visible from Python"
        else:
            was_training = model_or_onnx.training
            model_or_onnx.eval()
            try:
                model, x = _on_device(model_or_onnx, spec), x.to(spec.torch_device)
                if spec.kind == "cuda":
                    torch.cuda.synchronize(spec.torch_device)
                    torch.cuda.reset_peak_memory_stats(spec.torch_device)
                times = _time_loop(_torch_runner(model, spec, x), warmup, min_repeats, min_seconds)
                if not measure_peak:
                    peak, method = None, "not measured"
                elif spec.kind == "cuda":
                    peak, method = torch.cuda.max_memory_allocated(spec.torch_device) / 2**20, "cuda_max_allocated"
                else:
                    peak, method = _torch_cpu_peak_mb(model, x), "live_tensor_peak"
            finally:
                model_or_onnx.train(was_training)

    ms = np.asarray(times) * 1000.0
    mean_ms = float(ms.mean())
    return {
        "device": spec.name,
        "backend": backend,
        "batch_size": int(batch_size),
        "image_shape": [int(d) for d in image_shape],
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": mean_ms,
        "images_per_s": batch_size * 1000.0 / mean_ms,
        "peak_mem_mb": peak,
        "peak_mem_method": method,
        "n_repeats": len(times),
        "warmup": int(warmup),
        "threads": spec.threads,
    }


def profile_model(
    model: nn.Module,
    image_shape: tuple[int, int, int],
    devices: list[str],
    backends: list[str],
    batch_sizes: list[int],
    onnx_dir: str | os.PathLike | None = None,
    warmup: int = 3,
    min_repeats: int = 10,
    min_seconds: float = 1.0,
    gmacs: float | None = None,
    name: str = "model",
    progress: bool = True,
    int8_calibration: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Profile ``model`` on every usable device x backend x batch size.

    Exports ``<onnx_dir>/<name>.onnx`` once (dynamic batch; a temporary directory if ``onnx_dir`` is
    None) when onnxruntime is asked for, and checks it against PyTorch on a batch of 2 before any
    timing. Unusable devices and device/backend pairs are skipped with a logged reason.
    ``gmacs`` is *executed* MACs per image and defaults to ``roofline.count_gmacs``; the conventional
    count of ``metrics.cost.count_gmacs`` overstates stride-2 up-convs 4x, and so would the fraction.
    With ``int8_calibration`` (images the model takes) the export's static int8 quantization
    (alap.profile.quantize) is timed too, as backend ``onnxruntime-int8`` on the CPU devices (CUDA ones are
    skipped with the reason); its records carry no peak or fraction, since the fp32 peak is no roof for int8 kernels.

    Returns ``metrics`` (flat docs/architecture.md latency keys), ``records`` (one dict per combination, with
    ``peak_gflops`` and ``achieved_fraction`` of it), ``skipped`` ({"device" or "device/backend":
    reason}), ``executed_gmacs``, ``image_shape``, ``onnx_max_abs_diff`` and ``onnx_path`` (None when
    the file went to a temporary directory).
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"backends must be a non-empty subset of {BACKENDS}, got {backends}")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be a non-empty list of positive integers, got {batch_sizes}")
    usable, skipped = available_devices(devices)
    for spec_name, reason in skipped.items():
        log.warning("skipping device %s: %s", spec_name, reason)
    gmacs = count_gmacs(model, image_shape) if gmacs is None else float(gmacs)

    with tempfile.TemporaryDirectory() as scratch:
        onnx_path: Path | None = None
        onnx_diff: float | None = None
        timed = [*backends, *([INT8_BACKEND] if int8_calibration is not None else [])]
        files: dict[str, Path] = {}
        if any(backend in ONNX_BACKENDS for backend in timed):
            onnx_path = Path(onnx_dir or scratch) / f"{name}.onnx"
            export_onnx(model, onnx_path, (1, *image_shape), dynamic_batch=True)
            check_input = torch.randn((2, *image_shape), generator=torch.Generator().manual_seed(1))
            onnx_diff = check_onnx(model, onnx_path, check_input)
            files["onnxruntime"] = onnx_path
        if int8_calibration is not None:
            files[INT8_BACKEND] = quantize_int8(onnx_path, Path(scratch) / f"{name}.int8.onnx", int8_calibration)

        combos = [(spec, backend, int(bs)) for spec in usable for backend in timed for bs in batch_sizes]
        records: list[dict[str, Any]] = []
        bar = tqdm(combos, desc=f"profile {name}", unit="run", disable=None if progress else True)
        for spec, backend, bs in bar:
            key = f"{spec.name}/{backend}"
            if key in skipped:
                continue
            bar.set_postfix_str(f"{key} bs{bs}")
            log.info("timing %s on %s/%s at batch %d", name, spec.name, backend, bs)
            try:
                peak = None if backend == INT8_BACKEND else device_peak_gflops(spec, backend)
                rec = measure_latency(
                    files.get(backend, model),
                    spec,
                    backend,
                    bs,
                    image_shape,
                    warmup=warmup,
                    min_repeats=min_repeats,
                    min_seconds=min_seconds,
                )
            except DeviceUnavailable as err:
                log.warning("skipping %s: %s", key, err)
                skipped[key] = str(err)
                continue
            rec["peak_gflops"] = peak
            rec["achieved_fraction"] = None if peak is None else achieved_fraction(gmacs, rec["p50_ms"], bs, peak)
            if rec["achieved_fraction"] is not None and rec["achieved_fraction"] > 1.0:
                log.warning(
                    "%s %s bs%d runs at %.0f%% of the measured peak: gmacs=%.3g is probably not the "
                    "executed MAC count (see roofline.count_gmacs)",
                    name,
                    key,
                    bs,
                    100 * rec["achieved_fraction"],
                    gmacs,
                )
            records.append(rec)
            log.info(
                "%s %s bs%d: p50 %.2f ms, p90 %.2f ms, %.1f img/s%s",
                name,
                key,
                bs,
                rec["p50_ms"],
                rec["p90_ms"],
                rec["images_per_s"],
                "" if peak is None else f", {100 * rec['achieved_fraction']:.1f}% of peak",
            )

    return {
        "metrics": flatten_latency(records),
        "records": records,
        "skipped": skipped,
        "executed_gmacs": gmacs,
        "image_shape": [int(d) for d in image_shape],
        "onnx_path": str(onnx_path) if onnx_dir is not None and onnx_path is not None else None,
        "onnx_max_abs_diff": onnx_diff,
    }
