"""Time candidate architectures for the latency planner, caching each timing on disk.

The planner (alap.compress.latency_plan) asks for the p50 of many architectures, and a sweep of budgets asks again
for the same ones. Latency depends on the architecture, the device, the runtime and the input shape, not on weight
values, so one timing per (machine, device, backend, batch size, input shape, architecture) is kept in
``<cache_dir>/<device>.<backend>.bs<N>.<C>x<H>x<W>.json``: ``{"machine": ..., "timings": {arch digest: record}}``.
A file made on another machine (CPU model, runtime versions) is set aside, not mixed in. Every write re-reads
the file and replaces it atomically (alap/io.py), so a killed run or two planners side by side lose at most
their own newest timing.

A candidate is built freshly initialised from its arch and timed as the deployment would run it (ONNX export
plus onnxruntime, or PyTorch eval), with profile.latency's settings: eval mode, warm-up, the spec's threads.
Backend ``onnxruntime-int8`` times the export's static int8 quantization (alap.profile.quantize.export_int8),
calibrated on a few random inputs in [-1, 1] of the task's input shape: calibration sets the activation ranges,
which change the int8 values, not the graph, its shapes or its kernels, so a random calibration times as the
task's images would (a deployment calibrates on the task's images).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from alap import io
from alap.compress.params import INT8_BACKEND, LatencyTarget
from alap.models.arch import build_generator
from alap.paths import LATENCY_CACHE
from alap.profile.devices import parse_device
from alap.profile.export import export_onnx
from alap.profile.latency import measure_latency
from alap.profile.quantize import export_int8

log = logging.getLogger(__name__)

CALIBRATION_INPUTS = 4  # random calibration inputs of an int8 candidate (its timing does not depend on them)


class CandidateCost(Protocol):
    """What the planner needs of a timer: the p50 (ms) of an architecture, cached for the search and fresh to
    confirm the chosen plan."""

    def p50_ms(self, arch: dict[str, Any]) -> float: ...

    def fresh_p50_ms(self, arch: dict[str, Any]) -> float: ...


def arch_digest(arch: dict[str, Any]) -> str:
    """A short stable name of an architecture (its canonical JSON)."""
    return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:20]


def machine_fingerprint(device_kind: str) -> str:
    """What makes a timing valid only here: the processor (or GPU) model and the runtimes' versions."""
    import onnxruntime

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    if device_kind == "cuda":
        model = torch.cuda.get_device_name(0)
    return f"{model} | torch {torch.__version__} | onnxruntime {onnxruntime.__version__}"


class CandidateTimer:
    """p50 of candidate architectures on ``target``'s device, backend and batch size at ``image_shape`` (C, H, W).

    The timing settings are shorter than the profile stage's (a candidate is compared with a budget, not
    published), and :meth:`measure` is always fresh, for re-measuring the chosen student.
    """

    def __init__(
        self,
        target: LatencyTarget,
        image_shape: tuple[int, int, int],
        cache_dir: Path = LATENCY_CACHE,
        warmup: int = 3,
        min_repeats: int = 10,
        min_seconds: float = 0.5,
    ) -> None:
        self.target = target
        self.spec = parse_device(target.device)  # DeviceUnavailable (a UserError) before any work
        self.image_shape = tuple(int(d) for d in image_shape)
        shape = "x".join(map(str, self.image_shape))
        self.cache_file = Path(cache_dir) / f"{self.spec.name}.{target.backend}.bs{target.batch_size}.{shape}.json"
        io.check_output(self.cache_file)
        self.settings = {"warmup": warmup, "min_repeats": min_repeats, "min_seconds": min_seconds}
        self.machine = machine_fingerprint(self.spec.kind)
        self.hits = 0
        self.measured = 0

    def p50_ms(self, arch: dict[str, Any]) -> float:
        """The cached p50 of ``arch`` if this machine timed it before, else a fresh one (then cached)."""
        digest = arch_digest(arch)
        cached = self._timings().get(digest)
        if cached is not None:
            self.hits += 1
            return float(cached["p50_ms"])
        record = self.measure(build_generator(arch))
        timings = self._timings()
        timings[digest] = {"p50_ms": record["p50_ms"], "p90_ms": record["p90_ms"], "arch": arch}
        io.write_json(self.cache_file, {"machine": self.machine, "timings": timings})
        return float(record["p50_ms"])

    def fresh_p50_ms(self, arch: dict[str, Any]) -> float:
        """A fresh p50 of ``arch`` (not cached, not read from the cache)."""
        return float(self.measure(build_generator(arch))["p50_ms"])

    def measure(self, model: nn.Module) -> dict[str, Any]:
        """A fresh timing of ``model`` (never cached): profile.latency's record."""
        self.measured += 1
        model = model.eval()
        with tempfile.TemporaryDirectory() as scratch:
            subject: nn.Module | Path = model
            if self.target.backend == "onnxruntime":
                subject = export_onnx(model.cpu(), Path(scratch) / "candidate.onnx", (1, *self.image_shape))
            elif self.target.backend == INT8_BACKEND:
                subject = export_int8(model.cpu(), self.image_shape, self._calibration(), Path(scratch) / "int8.onnx")
            return measure_latency(
                subject,
                self.spec,
                self.target.backend,
                self.target.batch_size,
                self.image_shape,
                measure_peak=False,
                **self.settings,
            )

    def _calibration(self) -> torch.Tensor:
        """Random inputs in [-1, 1] of the input shape, the same for every candidate (seeded)."""
        generator = torch.Generator().manual_seed(0)
        return torch.rand((CALIBRATION_INPUTS, *self.image_shape), generator=generator) * 2 - 1

    def _timings(self) -> dict[str, Any]:
        if not self.cache_file.is_file():
            return {}
        try:
            cached = json.loads(self.cache_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("latency cache %s is not JSON: starting it afresh", self.cache_file)
            return {}
        if cached.get("machine") != self.machine:
            log.warning(
                "latency cache %s was timed on %r, this is %r: starting it afresh",
                self.cache_file,
                cached.get("machine"),
                self.machine,
            )
            return {}
        return dict(cached.get("timings", {}))
