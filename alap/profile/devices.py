"""Device specs for profiling: what a latency number was measured on, as one short string.

Users pick a student by its latency on *their* device, so a number is meaningless without the
device and the thread count it ran with. A spec names both and is what appears in metric keys
(docs/architecture.md: ``latency.<device>.<backend>.bs<N>.p50_ms``):

- ``cpu-t<N>``: the CPU with N intra-op threads (``cpu-t1`` single-thread; all cores is written
  out, e.g. ``cpu-t2`` on a 2-core machine, so keys stay comparable across machines).
- ``cuda<K>``: CUDA device K (``cuda0``).

A spec that is malformed raises ``ValueError`` (a configuration mistake); a well-formed spec this
machine cannot honour raises ``DeviceUnavailable`` so callers can skip it with a logged reason.

This module also configures the runtimes for a spec (torch thread count, onnxruntime session
options), so the latency and roofline measurements set threads the same way.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from alap.errors import UserError

if TYPE_CHECKING:  # torch is imported where needed, so onnxruntime-only subprocesses start fast
    import torch

_SPEC = re.compile(r"^(?:cpu-t(?P<threads>\d+)|cuda(?P<index>\d+))$")


class DeviceUnavailable(UserError):
    """A well-formed device spec that this machine cannot run (no CUDA, too few cores, no provider)."""


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device spec: ``name`` is the canonical string used in metric keys."""

    name: str
    kind: Literal["cpu", "cuda"]
    threads: int | None  # intra-op threads on CPU; None on CUDA (the GPU does the work)
    index: int | None  # CUDA device index; None on CPU

    @property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device("cpu") if self.kind == "cpu" else torch.device("cuda", self.index)


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_device(spec: str) -> DeviceSpec:
    """Parse and check a device spec such as ``cpu-t1``, ``cpu-t2`` or ``cuda0``.

    Raises ``ValueError`` for a malformed spec and ``DeviceUnavailable`` when this machine lacks
    the CUDA device or the cores asked for (more threads than cores would time contention, not
    the model).
    """
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(
            f"unknown device spec {spec!r}: expected 'cpu-t<N>' (N intra-op threads, e.g. 'cpu-t1') "
            "or 'cuda<K>' (CUDA device K, e.g. 'cuda0')"
        )
    if match["threads"] is not None:
        threads = int(match["threads"])
        if threads < 1:
            raise ValueError(f"device spec {spec!r}: the thread count must be at least 1")
        cores = cpu_cores()
        if threads > cores:
            raise DeviceUnavailable(
                f"device spec {spec!r} asks for {threads} threads but this machine has {cores} core(s)"
            )
        return DeviceSpec(name=f"cpu-t{threads}", kind="cpu", threads=threads, index=None)
    import torch

    index = int(match["index"])
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"device spec {spec!r} needs CUDA, which is not available on this machine")
    if index >= torch.cuda.device_count():
        raise DeviceUnavailable(
            f"device spec {spec!r} names CUDA device {index} but only {torch.cuda.device_count()} exist"
        )
    return DeviceSpec(name=f"cuda{index}", kind="cuda", threads=None, index=index)


def available_devices(requested: list[str]) -> tuple[list[DeviceSpec], dict[str, str]]:
    """Split requested specs into those usable here and ``{spec: reason}`` for those skipped.

    Malformed specs still raise ``ValueError``: a typo in params.yaml must not silently shrink a
    profile. Duplicates are kept once.
    """
    usable: list[DeviceSpec] = []
    skipped: dict[str, str] = {}
    for spec in requested:
        try:
            parsed = parse_device(spec)
        except DeviceUnavailable as err:
            skipped[spec] = str(err)
            continue
        if parsed not in usable:
            usable.append(parsed)
    return usable, skipped


def default_devices() -> list[str]:
    """The specs worth profiling on this machine: one thread, all cores, and CUDA device 0 if present."""
    import torch

    specs = ["cpu-t1"]
    if cpu_cores() > 1:
        specs.append(f"cpu-t{cpu_cores()}")
    if torch.cuda.is_available():
        specs.append("cuda0")
    return specs


@contextlib.contextmanager
def torch_threads(spec: DeviceSpec) -> Iterator[None]:
    """Run torch CPU ops with the spec's intra-op thread count, restoring the previous count after.

    ``torch.set_num_threads`` is process-global, so concurrent measurements in one process would
    disturb each other; the latency module serialises them.
    """
    import torch

    previous = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def ort_session(model: str | os.PathLike | bytes, spec: DeviceSpec):  # -> onnxruntime.InferenceSession
    """An onnxruntime session configured for ``spec``.

    CPU: ``intra_op_num_threads`` = the spec's threads, ``inter_op_num_threads`` = 1 and sequential
    execution, so N means N busy cores as it does for torch. CUDA: the CUDA execution provider on
    the spec's device; raises ``DeviceUnavailable`` when the installed onnxruntime lacks it (the
    CPU-only wheel does) rather than silently falling back to the CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    source = model if isinstance(model, bytes) else os.fspath(model)
    if spec.kind == "cpu":
        options.intra_op_num_threads = spec.threads
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DeviceUnavailable(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu to profile "
            f"{spec.name} with onnxruntime)"
        )
    session = ort.InferenceSession(
        source,
        sess_options=options,
        providers=[("CUDAExecutionProvider", {"device_id": spec.index}), "CPUExecutionProvider"],
    )
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise DeviceUnavailable(f"onnxruntime could not start CUDAExecutionProvider on {spec.name}")
    return session
