"""Latency of a generator per device x backend x batch size, and the whole-model profile.

Users choose a student by its latency on their device, so each number must be a stable median
measured the way the model will run: eval mode, no autograd, warmed up, the spec's thread count,
and (CUDA) synchronised so queued kernels are counted. ``profile_model`` exports the model once,
checks onnxruntime against PyTorch before timing anything (a fast wrong model is worthless), then
times every combination and returns DESIGN.md's flat metric keys plus one record per combination.

Measurements are serialised within a process: thread counts are process-global, and two timings
running side by side would measure each other.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from alap.profile.devices import DeviceSpec, DeviceUnavailable, available_devices, ort_session, parse_device, torch_threads
from alap.profile.export import INPUT_NAME, OUTPUT_NAME, check_onnx, export_onnx
from alap.profile.roofline import BACKENDS, achieved_fraction, device_peak_gflops

log = logging.getLogger(__name__)

_MEASURE_LOCK = threading.Lock()
_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def latency_metric_names(device: str, backend: str, batch_size: int) -> tuple[str, str]:
    """The (p50, p90) metric keys DESIGN.md fixes: ``latency.<device>.<backend>.bs<N>.p50_ms`` / ``.p90_ms``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    prefix = f"latency.{device}.{backend}.bs{int(batch_size)}"
    return f"{prefix}.p50_ms", f"{prefix}.p90_ms"


def flatten_latency(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Flat ``{metric key: ms}`` from measurement records (``device``, ``backend``, ``batch_size``, ``p50_ms``, ``p90_ms``)."""
    flat: dict[str, float] = {}
    for rec in records:
        p50_key, p90_key = latency_metric_names(rec["device"], rec["backend"], rec["batch_size"])
        flat[p50_key] = float(rec["p50_ms"])
        flat[p90_key] = float(rec["p90_ms"])
    return flat


class _RssPeak:
    """Peak resident memory above the starting point, from the kernel's own high-water mark.

    Linux keeps VmHWM (peak RSS) per process and resets it when "5" is written to
    /proc/self/clear_refs, so the peak during a measurement is read exactly instead of sampled.
    Limits, said plainly: it is the whole process (other threads' allocations count), and memory
    that an earlier, bigger run freed but the allocator kept is reused without raising RSS, so in a
    long-lived process the delta can understate; run in a fresh process for a clean number.
    Where the mechanism is missing (not Linux, no permission) the peak is None with the reason.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.start_kb = 0
        try:
            _PROC_CLEAR_REFS.write_text("5")
            self.start_kb = self._read_kb("VmRSS")
        except OSError as err:
            self.reason = f"peak RSS not measurable here ({err})"

    @staticmethod
    def _read_kb(field: str) -> int:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise OSError(f"{field} missing from {_PROC_STATUS}")

    def peak_mb(self) -> float | None:
        if self.reason is not None:
            return None
        return (self._read_kb("VmHWM") - self.start_kb) / 1024.0


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


def _torch_runner(model: nn.Module, spec: DeviceSpec, x: torch.Tensor) -> Callable[[], None]:
    dev = spec.torch_device
    first = next(model.parameters(), None)
    if first is not None and first.device != dev:
        model = copy.deepcopy(model).to(dev)  # never move the caller's model behind its back
    x = x.to(dev)
    sync = (lambda: torch.cuda.synchronize(dev)) if spec.kind == "cuda" else (lambda: None)

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
) -> dict[str, Any]:
    """Time one forward pass of a batch; return p50/p90/mean ms, images/s, peak memory and settings.

    ``backend="torch"`` takes an ``nn.Module`` (run in eval mode under ``inference_mode``);
    ``backend="onnxruntime"`` takes a path from ``export_onnx``. ``image_shape`` is (C, H, W).
    Peak memory: CUDA torch = ``torch.cuda.max_memory_allocated`` during the run (weights included);
    CPU = peak RSS above the RSS at the start of the call (see ``_RssPeak``; for onnxruntime this
    includes the session, i.e. its copy of the weights and its arena); onnxruntime on CUDA
    = None, because its arena is invisible to torch. ``peak_mem_method`` says which.
    """
    spec = device_spec if isinstance(device_spec, DeviceSpec) else parse_device(device_spec)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
    if batch_size < 1 or len(image_shape) != 3 or min_repeats < 1 or warmup < 0 or min_seconds < 0:
        raise ValueError(
            f"measure_latency needs batch_size >= 1, image_shape (C, H, W), min_repeats >= 1, warmup >= 0, "
            f"min_seconds >= 0; got batch_size={batch_size}, image_shape={image_shape}, "
            f"min_repeats={min_repeats}, warmup={warmup}, min_seconds={min_seconds}"
        )
    if backend == "torch" and not isinstance(model_or_onnx, nn.Module):
        raise TypeError(f"backend 'torch' needs an nn.Module, got {type(model_or_onnx).__name__}")
    if backend == "onnxruntime":
        if isinstance(model_or_onnx, nn.Module):
            raise TypeError("backend 'onnxruntime' needs the path of an ONNX file (see export_onnx), got an nn.Module")
        if not Path(model_or_onnx).is_file():
            raise FileNotFoundError(f"ONNX file {model_or_onnx} does not exist")
    x = torch.randn((batch_size, *image_shape), generator=torch.Generator().manual_seed(0))

    with _MEASURE_LOCK, torch_threads(spec), torch.inference_mode():
        cuda_torch = spec.kind == "cuda" and backend == "torch"
        if cuda_torch:
            torch.cuda.synchronize(spec.torch_device)
            torch.cuda.reset_peak_memory_stats(spec.torch_device)
        rss = _RssPeak() if spec.kind == "cpu" else None
        if backend == "torch":
            was_training = model_or_onnx.training
            model_or_onnx.eval()
            try:
                times = _time_loop(_torch_runner(model_or_onnx, spec, x), warmup, min_repeats, min_seconds)
            finally:
                model_or_onnx.train(was_training)
        else:
            times = _time_loop(_ort_runner(Path(model_or_onnx), spec, x), warmup, min_repeats, min_seconds)
        if cuda_torch:
            peak, method = torch.cuda.max_memory_allocated(spec.torch_device) / 2**20, "cuda_max_allocated"
        elif rss is not None:
            peak = rss.peak_mb()
            method = "rss_hwm_delta" if peak is not None else f"null: {rss.reason}"
        else:
            peak, method = None, "null: onnxruntime's CUDA arena is not visible to torch"

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


def _count_gmacs(model: nn.Module, image_shape: tuple[int, int, int]) -> float:
    """MACs of one image through ``model``, via Torch-Pruning's op counter (conv/linear/norm hooks)."""
    import torch_pruning as tp

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            macs, _ = tp.utils.count_ops_and_params(model, torch.zeros((1, *image_shape), device=device))
    finally:
        model.train(was_training)
    return float(macs) / 1e9


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
) -> dict[str, Any]:
    """Profile ``model`` on every usable device x backend x batch size.

    Exports ``<onnx_dir>/<name>.onnx`` once (dynamic batch; a temporary directory if ``onnx_dir`` is
    None) when onnxruntime is asked for, and checks it against PyTorch on a batch of 2 before any
    timing. Unusable devices and device/backend pairs are skipped with a logged reason.
    ``gmacs`` (per image) defaults to Torch-Pruning's count. Returns ``metrics`` (flat DESIGN.md
    latency keys), ``records`` (one dict per combination, with ``achieved_fraction`` of the measured
    peak), ``skipped`` ({"device[/backend]": reason}), ``gmacs``, ``onnx_max_abs_diff``, ``onnx_path``.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"backends must be a non-empty subset of {BACKENDS}, got {backends}")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be a non-empty list of positive integers, got {batch_sizes}")
    usable, skipped = available_devices(devices)
    for spec_name, reason in skipped.items():
        log.warning("skipping device %s: %s", spec_name, reason)
    gmacs = _count_gmacs(model, image_shape) if gmacs is None else float(gmacs)

    with tempfile.TemporaryDirectory() as scratch:
        onnx_path: Path | None = None
        onnx_diff: float | None = None
        if "onnxruntime" in backends:
            onnx_path = Path(onnx_dir or scratch) / f"{name}.onnx"
            export_onnx(model, onnx_path, (1, *image_shape), dynamic_batch=True)
            check_input = torch.randn((2, *image_shape), generator=torch.Generator().manual_seed(1))
            onnx_diff = check_onnx(model, onnx_path, check_input)

        combos = [(spec, backend, int(bs)) for spec in usable for backend in backends for bs in batch_sizes]
        records: list[dict[str, Any]] = []
        bar = tqdm(combos, desc=f"profile {name}", unit="run", disable=not progress)
        for spec, backend, bs in bar:
            key = f"{spec.name}/{backend}"
            if key in skipped:
                continue
            bar.set_postfix_str(f"{key} bs{bs}")
            log.info("timing %s on %s/%s at batch %d", name, spec.name, backend, bs)
            try:
                peak = device_peak_gflops(spec, backend)
                rec = measure_latency(model if backend == "torch" else onnx_path, spec, backend, bs, image_shape,
                                      warmup=warmup, min_repeats=min_repeats, min_seconds=min_seconds)
            except DeviceUnavailable as err:
                log.warning("skipping %s: %s", key, err)
                skipped[key] = str(err)
                continue
            rec["peak_gflops"] = peak
            rec["achieved_fraction"] = achieved_fraction(gmacs, rec["p50_ms"], bs, peak)
            records.append(rec)
            log.info("%s %s bs%d: p50 %.2f ms, p90 %.2f ms, %.1f img/s, %.1f%% of peak", name, key, bs,
                     rec["p50_ms"], rec["p90_ms"], rec["images_per_s"], 100 * rec["achieved_fraction"])

    return {
        "metrics": flatten_latency(records),
        "records": records,
        "skipped": skipped,
        "gmacs": gmacs,
        "image_shape": [int(d) for d in image_shape],
        "onnx_path": str(onnx_path) if onnx_dir is not None and onnx_path is not None else None,
        "onnx_max_abs_diff": onnx_diff,
    }
